// Package probe lets a FROM-scratch image health-check itself: the image has no curl, so the
// binary answers `healthcheck` by fetching its own health endpoint.
package probe

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

// IfRequested exits the process after probing url when the first argument is "healthcheck";
// otherwise it returns and the program starts normally.
func IfRequested(url string) {
	if len(os.Args) < 2 || os.Args[1] != "healthcheck" {
		return
	}
	if err := Check(url, 2*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Check returns nil when url answers 200 within timeout, which bounds the whole exchange
// (connect, headers, redirects). Only the probed server's own answer counts: no proxy.
func Check(url string, timeout time.Duration) error {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
