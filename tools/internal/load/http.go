package load

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// NewClient returns an HTTP client that keeps one idle connection per worker, so a run
// measures the server and not connection setup.
func NewClient(workers int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:        workers,
			MaxIdleConnsPerHost: workers,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}
}

// StatusError is a response the caller did not accept.
type StatusError struct{ Code int }

func (e StatusError) Error() string { return fmt.Sprintf("HTTP %d", e.Code) }

// Get is an Op that fetches url and accepts only a 2xx response with a fully read body.
func Get(client *http.Client, url string) Op {
	return func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return "", fmt.Errorf("reading body: %w", err)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return "", StatusError{resp.StatusCode}
		}
		return resp.Header.Get("X-Served-By"), nil
	}
}
