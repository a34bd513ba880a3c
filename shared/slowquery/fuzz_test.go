package slowquery

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sysdesign-course/course/shared/httpserver/httpservertest"
)

// FuzzParseDuration: any duration is either refused with a message or from 0 to
// MaxDuration, and the route agrees and never answers 5xx. Only refused or short
// durations go through the route, which really waits.
func FuzzParseDuration(f *testing.F) {
	for _, seed := range []string{"", "0s", "-0s", "1ms", "250ms", "2s", "30s", "30.001s", "-1s", "2", "abc", "1e3s", "99999999999999999999h", "1h2m3s", "876000h", ".5s"} {
		f.Add(seed)
	}
	s := httpservertest.New(Register)
	f.Fuzz(func(t *testing.T, raw string) {
		d, err := parse(raw)
		switch {
		case err != nil:
			assert.NotEmpty(t, err.Error())
		case d < 0 || d > MaxDuration:
			t.Fatalf("duration %s out of bounds", d)
		case d > 5*time.Millisecond:
			return
		}
		assert.Equal(t, err != nil, httpservertest.Get(t, s, "/long-query?duration="+url.QueryEscape(raw)), "the route refuses %q exactly when parse does", raw)
	})
}
