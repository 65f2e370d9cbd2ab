package mvcc

// testHooks let tests pause the store where it must not hold a lock others need. They are
// nil outside tests, set before the operation they pause starts.
type testHooks struct {
	// rangeValue runs in ReadTxn.Range before the i-th value is decoded.
	rangeValue func(i int)
	// hashScan runs in HashByRev before the n-th "key" bucket entry is hashed.
	hashScan func(n int)
	// compactBatch runs in the background compaction before each batch.
	compactBatch func()
	// defragCopy runs in Defragment's copy before each of its commits.
	defragCopy func()
}
