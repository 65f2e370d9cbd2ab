package mvcc

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestWatchMetrics(t *testing.T) {
	s, _ := newStore(t)
	streams0, watchers0 := metricValue(watchStreamGauge), metricValue(watcherGauge)
	slow0, pending0 := metricValue(slowWatcherGauge), metricValue(pendingEventsGauge)
	ws := s.NewWatchStream()
	mustWatch(t, ws, AutoWatchID, "a", "", 0, false)
	mustWatch(t, ws, AutoWatchID, "a", "b", 0, false)
	if d := metricValue(watchStreamGauge) - streams0; d != 1 {
		t.Fatalf("watch_stream_total +%v, want +1", d)
	}
	if d := metricValue(watcherGauge) - watchers0; d != 2 {
		t.Fatalf("watcher_total +%v, want +2", d)
	}
	for i := 0; i < chanBufLen; i++ {
		put(t, s, "a", "v")
	}
	if d := metricValue(slowWatcherGauge) - slow0; d != 2 {
		t.Fatalf("slow_watcher_total +%v, want +2", d)
	}
	if d := metricValue(pendingEventsGauge) - pending0; d != chanBufLen {
		t.Fatalf("pending_events_total +%v, want +%d", d, chanBufLen)
	}
	events0 := metricValue(totalEventsCounter)
	ReportEventReceived(3)
	if d := metricValue(totalEventsCounter) - events0; d != 3 {
		t.Fatalf("events_total +%v, want +3", d)
	}
	ws.Close()
	if metricValue(watchStreamGauge) != streams0 || metricValue(watcherGauge) != watchers0 ||
		metricValue(slowWatcherGauge) != slow0 {
		t.Fatal("gauges not back after Close")
	}
	ReportEventReceived(chanBufLen - 3)
}

func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}
