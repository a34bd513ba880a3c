package httpserver

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

func benchHandler(b *testing.B, h http.Handler) {
	req := httptest.NewRequest(http.MethodGet, "/ping", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
	}
}

func BenchmarkPingCourseServer(b *testing.B) {
	benchHandler(b, New(Config{Instance: "b"}, slog.New(slog.NewJSONHandler(io.Discard, nil))).Echo)
}

func BenchmarkPingBareEcho(b *testing.B) {
	e := echo.New()
	e.GET("/ping", func(c echo.Context) error { return c.JSON(200, map[string]string{"message": "pong", "instance": "b"}) })
	benchHandler(b, e)
}

func BenchmarkPingNetHTTP(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"message": "pong", "instance": "b"})
	})
	benchHandler(b, mux)
}
