package probe

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	assert.NoError(t, Check(ok.URL, time.Second))

	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	assert.ErrorContains(t, Check(failing.URL, time.Second), "503")
}

func TestCheckGivesUpOnASilentServer(t *testing.T) {
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer silent.Close()
	defer close(release)
	start := time.Now()
	assert.Error(t, Check(silent.URL, 100*time.Millisecond))
	assert.Less(t, time.Since(start), 2*time.Second)
}
