package balancer

import (
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"strings"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": msg, "status": status})
}

// Registration is the body of POST/DELETE /register.
type Registration struct {
	URL    string `json:"url"`
	Weight int64  `json:"weight"`
}

// Admin serves the balancer's control plane, meant for the internal network and the
// host's loopback only:
//
//	POST   /register     {"url": "http://host:8080", "weight": 1}  a server announces itself (again: a heartbeat);
//	                     403 for the balancer's own address, 409 past MaxBackends (see Register)
//	DELETE /register     {"url": "http://host:8080"}               and leaves on shutdown
//	GET    /stats        HTML that refreshes itself
//	GET    /stats.json   the same data
//	PUT    /config       {"strategy": "weighted", "weights": {"http://host:8080": 3}}
func (lb *Balancer) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /register", func(w http.ResponseWriter, r *http.Request) {
		var reg Registration
		if !decode(w, r, &reg) {
			return
		}
		if reg.Weight == 0 {
			reg.Weight = 1
		}
		added, err := lb.Register(r.Context(), reg.URL, reg.Weight)
		if err != nil {
			writeError(w, registerStatus(err), err.Error())
			return
		}
		status := http.StatusOK
		if added {
			status = http.StatusCreated
		}
		writeJSON(w, status, reg)
	})
	mux.HandleFunc("DELETE /register", func(w http.ResponseWriter, r *http.Request) {
		var reg Registration
		if !decode(w, r, &reg) {
			return
		}
		if !lb.Remove(strings.TrimSuffix(reg.URL, "/")) {
			writeError(w, http.StatusNotFound, "no backend "+reg.URL)
			return
		}
		writeJSON(w, http.StatusOK, reg)
	})
	mux.HandleFunc("PUT /config", func(w http.ResponseWriter, r *http.Request) {
		var cfg struct {
			Strategy string           `json:"strategy"`
			Weights  map[string]int64 `json:"weights"`
		}
		if !decode(w, r, &cfg) {
			return
		}
		var st Strategy
		if cfg.Strategy != "" {
			var err error
			if st, err = ParseStrategy(cfg.Strategy); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		if err := lb.SetWeights(cfg.Weights); errors.Is(err, errUnknown) {
			writeError(w, http.StatusNotFound, err.Error())
			return
		} else if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if st != "" {
			lb.SetStrategy(st)
		}
		writeJSON(w, http.StatusOK, lb.Stats())
	})
	mux.HandleFunc("GET /stats.json", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, lb.Stats()) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statsPage.Execute(w, lb.Stats())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { writeError(w, http.StatusNotFound, "not found") })
	return mux
}

// registerStatus is the answer to a refused registration. Only a name that did not
// resolve is worth retrying (503: the registrar backs off and tries again); refusals are
// 4xx, which the registrar takes as final.
func registerStatus(err error) int {
	switch {
	case errors.Is(err, errInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errSelf):
		return http.StatusForbidden
	case errors.Is(err, errFull):
		return http.StatusConflict
	case errors.Is(err, errResolve):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// decode reads a small JSON body strictly, answering 400 itself when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON of the documented shape: "+err.Error())
		return false
	}
	// Decode stops after the first value; whatever follows would go unread.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "body must hold exactly one JSON object")
		return false
	}
	return true
}

var statsPage = template.Must(template.New("stats").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="1">
<title>balancer stats</title>
<style>
body{font:14px monospace;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #999;padding:4px 10px;text-align:right}th{background:#ddd}
td:first-child{text-align:left}.up{background:#cfc}.down{background:#fcc}
</style></head><body>
<h1>balancer</h1><p>strategy: <b>{{.Strategy}}</b> · refreshes every second · <a href="/stats.json">json</a></p>
<table><tr><th>backend</th><th>state</th><th>weight</th><th>in flight</th><th>requests</th><th>errors</th><th>last check</th><th>check ms</th></tr>
{{range .Backends}}<tr class="{{.State}}"><td>{{.URL}}</td><td>{{.State}}</td><td>{{.Weight}}</td><td>{{.InFlight}}</td><td>{{.Total}}</td><td>{{.Errors}}</td>
<td>{{with .LastCheck}}{{if .OK}}ok{{else}}{{.Error}}{{end}}{{else}}-{{end}}</td><td>{{with .LastCheck}}{{printf "%.1f" .LatencyMS}}{{end}}</td></tr>
{{else}}<tr><td colspan="8">no backends registered</td></tr>{{end}}
</table></body></html>
`))
