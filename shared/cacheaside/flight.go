package cacheaside

import (
	"context"
	"fmt"
	"sync"
)

// flights collapses concurrent misses for one key into as few reads as freshness allows.
//
// Plain singleflight hands every caller the result of the read already in progress. That
// read may have started before the caller arrived, and so before a write the caller has
// already seen acknowledged: a stale answer. Here a caller only shares a read that starts
// after it arrived. Per key there is at most one read running and one waiting; callers
// arriving during a running read all join the waiting one, which starts when the running
// one ends. A burst of N concurrent misses costs two reads, not N, and none is stale.
type flights[V any] struct {
	mu   sync.Mutex
	keys map[string]*slots[V]
	// joined, set only by tests, runs when a caller joins a waiting read: otherwise they
	// cannot know every caller has joined before they let a read finish.
	joined func()
}

type slots[V any] struct{ running, waiting *call[V] }

type call[V any] struct {
	fn   func() (V, error) // must not depend on any one caller's context
	done chan struct{}
	val  V
	err  error
}

// do runs fn for key, or waits for a read of key that starts after now. shared reports a
// result this caller did not read itself. A caller whose ctx ends stops waiting; the read
// goes on for the others.
func (f *flights[V]) do(ctx context.Context, key string, fn func() (V, error)) (v V, shared bool, err error) {
	f.mu.Lock()
	if f.keys == nil {
		f.keys = map[string]*slots[V]{}
	}
	s := f.keys[key]
	if s == nil {
		s = &slots[V]{}
		f.keys[key] = s
	}
	if s.running == nil {
		c := &call[V]{fn: fn, done: make(chan struct{})}
		s.running = c
		f.mu.Unlock()
		f.run(key, s, c)
		return c.val, false, c.err
	}
	if s.waiting == nil {
		s.waiting = &call[V]{fn: fn, done: make(chan struct{})}
	}
	c := s.waiting
	f.mu.Unlock()
	if f.joined != nil {
		f.joined()
	}
	select {
	case <-c.done:
		return c.val, true, c.err
	case <-ctx.Done():
		var zero V
		return zero, true, ctx.Err()
	}
}

// run reads, then hands the key to the waiting call, if any, which reads next.
func (f *flights[V]) run(key string, s *slots[V], c *call[V]) {
	defer func() {
		if r := recover(); r != nil {
			c.err = fmt.Errorf("cacheaside: load panicked: %v", r)
		}
		f.mu.Lock()
		next := s.waiting
		s.running, s.waiting = next, nil
		if next == nil {
			delete(f.keys, key)
		}
		f.mu.Unlock()
		close(c.done)
		if next != nil {
			go f.run(key, s, next)
		}
	}()
	c.val, c.err = c.fn()
}
