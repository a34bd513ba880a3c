package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// curlCmd sends GET path to stage n's target from inside the stack's network, where a
// virtual IP is reachable even on Docker Desktop, and prints the status, which replica
// answered and the body, as `curl -i` would in short.
func curlCmd(ctx context.Context, n int, path string) int {
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintln(os.Stderr, "curl: the path starts with /, e.g. /users/1")
		return 2
	}
	_, st, err := stageOf(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "curl:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.Target+path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "curl:", err)
		return 2
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "curl:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Printf("GET %s%s -> %s in %s\n", st.Target, path, resp.Status, time.Since(start).Round(100*time.Microsecond))
	for _, h := range []string{"X-Served-By", "X-Request-Id", "Content-Type"} {
		if v := resp.Header.Get(h); v != "" {
			fmt.Printf("%s: %s\n", h, v)
		}
	}
	fmt.Printf("\n%s\n", strings.TrimSpace(string(body)))
	return 0
}
