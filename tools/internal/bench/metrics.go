package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Scrape reads a Prometheus text page and returns every sample, keyed as written on the
// page: `name` or `name{label="value",...}`. Diffing two scrapes gives what a run did.
func Scrape(ctx context.Context, client *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		key, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			key, rest = line[:i+1], line[i+1:]
		} else if k, r, ok := strings.Cut(line, " "); ok {
			key, rest = k, r
		}
		value, _, _ := strings.Cut(strings.TrimSpace(rest), " ") // drop a timestamp
		if v, err := strconv.ParseFloat(value, 64); err == nil && key != "" {
			out[key] = v
		}
	}
	return out, nil
}

// Sum adds up the samples of metric name whose labels include every `key="value"` pair
// given, e.g. Sum(m, "cache_requests_total", `result="hit"`).
func Sum(samples map[string]float64, name string, labels ...string) float64 {
	total := 0.0
	for key, v := range samples {
		n, rest, _ := strings.Cut(key, "{")
		if n != name {
			continue
		}
		set := strings.Split(strings.TrimSuffix(rest, "}"), ",")
		ok := true
		for _, l := range labels {
			if !slices.Contains(set, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}
