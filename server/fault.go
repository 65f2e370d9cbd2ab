package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Fault injection is for tests only: cmd/cairn serves FaultHandler on the client and
// metrics URLs when the environment has FaultInjectionEnv=1, and never otherwise.

// FaultInjectionEnv is the environment variable that enables FaultHandler (value "1").
const FaultInjectionEnv = "CAIRN_FAULT_INJECTION"

// FaultPath is where FaultHandler is served; its one fault is FaultPath+"raft-freeze".
const FaultPath = "/debug/fault/"

// maxRaftFreeze bounds one freeze, so a test that dies mid-fault leaves no member frozen
// for long.
const maxRaftFreeze = 10 * time.Minute

// FaultHandler serves POST /debug/fault/raft-freeze?seconds=N: the raft Ready loop stops
// for N seconds (a decimal; at most maxRaftFreeze) while everything else, client gRPC
// included, keeps serving, as when the member's WAL disk stalls; seconds=0 ends a
// freeze early.
func (s *Server) FaultHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(FaultPath+"raft-freeze", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		secs, err := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
		d := time.Duration(secs * float64(time.Second))
		if err != nil || secs < 0 || d > maxRaftFreeze {
			http.Error(w, fmt.Sprintf("seconds=%q: want a number of seconds from 0 to %v", r.URL.Query().Get("seconds"), maxRaftFreeze), http.StatusBadRequest)
			return
		}
		s.lg.Warn("fault injection: freezing the raft ready loop", zap.Duration("for", d))
		s.node.FreezeReadyLoop(d)
		fmt.Fprintf(w, "raft ready loop frozen for %v\n", d)
	})
	return mux
}
