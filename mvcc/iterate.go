package mvcc

import "github.com/cairn-kv/cairn/proto/mvccpb"

// ForEach calls f for every key live at the view's revision in [key, end) (the end
// encodings of Range), in key order, with its KeyValue decoded from the backend one at a
// time: unlike Range it never holds more than the one value, so a scan of the whole
// store (the lease restore at boot or snapshot install) costs the memory of one value,
// not of the db. The store is read-locked throughout (writes wait): f must be quick and
// must not call into the store. f's error stops the scan and is returned.
func (t *ReadTxn) ForEach(key, end []byte, f func(kv *mvccpb.KeyValue) error) error {
	rangeCounter.Inc()
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	r := t.s.b.reader()
	defer r.close()
	var err error
	t.s.idx.visit(key, end, func(ki *keyIndex) bool {
		rev, _, _, ok := ki.get(t.rev)
		if !ok {
			return true
		}
		var kv *mvccpb.KeyValue
		if kv, err = decodeKV(rev, r.value); err != nil {
			return false
		}
		err = f(kv)
		return err == nil
	})
	return err
}
