package mvcc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cairn-kv/cairn/proto/mvccpb"
)

// ForEach visits the keys live at the view's revision, in key order, with the values
// Range returns (committed or still buffered), and stops at f's error.
func TestReadTxnForEach(t *testing.T) {
	s, _ := newStore(t)
	for i := 0; i < 5; i++ {
		put(t, s, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	del(t, s, "k2", "")
	put(t, s, "k1", "v1b")
	rt := s.Read()
	put(t, s, "k5", "after the view")

	visit := func(key, end string, stopAt int) ([]string, error) {
		var got []string
		var e []byte
		if end != "" {
			e = []byte(end)
		}
		err := rt.ForEach([]byte(key), e, func(kv *mvccpb.KeyValue) error {
			got = append(got, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.ModRevision))
			if len(got) == stopAt {
				return errors.New("stop")
			}
			return nil
		})
		return got, err
	}
	got, err := visit("\x00", "\x00", 0)
	want := fmt.Sprint([]string{"k0=v0@2", "k1=v1b@8", "k3=v3@5", "k4=v4@6"})
	if err != nil || fmt.Sprint(got) != want {
		t.Fatalf("ForEach over everything = %v, %v; want %v", got, err, want)
	}
	if got, err := visit("k1", "k4", 0); err != nil || fmt.Sprint(got) != "[k1=v1b@8 k3=v3@5]" {
		t.Fatalf("ForEach [k1, k4) = %v, %v", got, err)
	}
	if got, err := visit("k3", "", 0); err != nil || fmt.Sprint(got) != "[k3=v3@5]" {
		t.Fatalf("ForEach k3 = %v, %v", got, err)
	}
	if got, err := visit("\x00", "\x00", 2); err == nil || err.Error() != "stop" || len(got) != 2 {
		t.Fatalf("ForEach stopped by f = %v, %v", got, err)
	}
}
