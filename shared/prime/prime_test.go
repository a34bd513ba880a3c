package prime

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
)

func TestIsPrime(t *testing.T) {
	primes := map[int64]bool{0: false, 1: false, 2: true, 3: true, 4: false, 97: true, 524287: true, 524289: false}
	for n, want := range primes {
		assert.Equal(t, want, IsPrime(n), n)
	}
}

func TestBadInputIs400(t *testing.T) {
	e := echo.New()
	Register(e)
	for _, n := range []string{"-1", "abc", "1.5", "100000001", "99999999999999999999"} {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/is-prime/"+n, nil))
		assert.Equal(t, http.StatusBadRequest, w.Code, n)
	}
}

func BenchmarkDefaultN(b *testing.B) {
	for b.Loop() {
		IsPrime(DefaultN)
	}
}
