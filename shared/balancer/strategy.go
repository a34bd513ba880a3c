package balancer

import "fmt"

// Strategy chooses among healthy backends.
type Strategy string

// The strategies a balancer can use.
const (
	RoundRobin Strategy = "round-robin" // each in turn
	Weighted   Strategy = "weighted"    // smooth weighted round robin, as nginx does it
	LeastConn  Strategy = "least-conn"  // the one with the fewest requests in flight
)

// ParseStrategy validates a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case RoundRobin, Weighted, LeastConn:
		return st, nil
	}
	return "", fmt.Errorf("unknown strategy %q: want %s, %s or %s", s, RoundRobin, Weighted, LeastConn)
}

// pick returns the next backend among candidates (all healthy, none excluded), or nil.
// The caller holds the balancer's lock.
func (lb *Balancer) pickLocked(cands []*Backend) *Backend {
	if len(cands) == 0 {
		return nil
	}
	switch lb.strategy {
	case Weighted:
		// Smooth weighted round robin: every pick raises each score by its weight and
		// lowers the winner's by the total, so weights 3:1 give a a b a, not a a a b.
		var best *Backend
		total := int64(0)
		for _, b := range cands {
			w := b.weight.Load()
			b.current += w
			total += w
			if best == nil || b.current > best.current {
				best = b
			}
		}
		best.current -= total
		return best
	case LeastConn:
		lb.next++
		start := int(lb.next % uint64(len(cands))) // ties go round robin, not always to the first
		best := cands[start]
		for i := range cands {
			b := cands[(start+i)%len(cands)]
			if b.inFlight.Load() < best.inFlight.Load() {
				best = b
			}
		}
		return best
	default:
		lb.next++
		return cands[lb.next%uint64(len(cands))]
	}
}
