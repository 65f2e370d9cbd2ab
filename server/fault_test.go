package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// FaultHandler accepts only POST with 0 <= seconds <= maxRaftFreeze; a valid request
// freezes (and seconds=0 thaws) the Ready loop.
func TestFaultHandler(t *testing.T) {
	s := startServer(t, testConfig(t))
	h := s.FaultHandler()
	for _, tc := range []struct {
		method, query string
		want          int
	}{
		{http.MethodGet, "seconds=1", http.StatusMethodNotAllowed},
		{http.MethodPost, "", http.StatusBadRequest},
		{http.MethodPost, "seconds=-1", http.StatusBadRequest},
		{http.MethodPost, "seconds=abc", http.StatusBadRequest},
		{http.MethodPost, "seconds=100000", http.StatusBadRequest},
		{http.MethodPost, "seconds=30", http.StatusOK},
		{http.MethodPost, "seconds=0", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, FaultPath+"raft-freeze?"+tc.query, nil))
		if rec.Code != tc.want {
			t.Errorf("%s ?%s: %d %q, want %d", tc.method, tc.query, rec.Code, rec.Body.String(), tc.want)
		}
	}
	// Thawed: writes commit again.
	mustPut(t, s, "after-thaw", "v")
}
