package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape reads a Prometheus metrics page and returns every sample, keyed as a text page
// writes it: `name` or `name{label="value",...}`, labels sorted; histograms and summaries
// come as their _bucket, _sum and _count series. Diffing two scrapes gives what a run did.
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
	dec := expfmt.SampleDecoder{Dec: expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header)), Opts: &expfmt.DecodeOptions{}}
	out := map[string]float64{}
	for {
		var samples model.Vector
		err := dec.Decode(&samples)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
		for _, s := range samples {
			out[sampleKey(s.Metric)] = float64(s.Value)
		}
	}
}

// sampleKey writes m as a text page names a series, with no space after the commas (the
// form Sum matches), unlike model.Metric's String.
func sampleKey(m model.Metric) string {
	labels := make([]string, 0, len(m))
	for name, value := range m {
		if name != model.MetricNameLabel {
			labels = append(labels, string(name)+"="+strconv.Quote(string(value)))
		}
	}
	name := string(m[model.MetricNameLabel])
	if len(labels) == 0 {
		return name
	}
	slices.Sort(labels)
	return name + "{" + strings.Join(labels, ",") + "}"
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
