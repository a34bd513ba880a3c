package prime

import (
	"net/url"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sysdesign-course/course/shared/httpserver/httpservertest"
)

// FuzzParseN: any n is either a 400 or a number from 0 to MaxN, and the route agrees and
// never answers 5xx. Only refused or small n go through the route: a large prime costs
// seconds.
func FuzzParseN(f *testing.F) {
	for _, seed := range []string{"0", "1", "97", "25000009", "100000000", "100000001", "-1", "+7", "007", "1.5", "1e3", "abc", "", " 5", "99999999999999999999", "0x10"} {
		f.Add(seed)
	}
	s := httpservertest.New(Register)
	f.Fuzz(func(t *testing.T, raw string) {
		n, err := parseN(raw)
		if err != nil {
			httpservertest.BadRequest(t, err)
		} else {
			assert.True(t, n >= 0 && n <= MaxN, "n %d out of bounds", n)
			want, perr := strconv.ParseInt(raw, 10, 64)
			require.NoError(t, perr)
			assert.Equal(t, want, n)
			if n > 100_000 {
				return
			}
		}
		assert.Equal(t, err != nil, httpservertest.Get(t, s, "/is-prime/"+url.PathEscape(raw)), "the route refuses %q exactly when parseN does", raw)
	})
}
