package raftnode

import "go.uber.org/zap"

// raftLogger adapts zap to raft.Logger, which spells its warn level "Warning".
type raftLogger struct{ *zap.SugaredLogger }

func newRaftLogger(lg *zap.Logger) raftLogger {
	return raftLogger{lg.Named("raft").WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

func (l raftLogger) Warning(v ...interface{})                 { l.Warn(v...) }
func (l raftLogger) Warningf(format string, v ...interface{}) { l.Warnf(format, v...) }
