package server

import "testing"

// The backend's memory map is sized as etcd sizes it unless InitialMmapSize is set.
func TestInitialMmapSizeDefault(t *testing.T) {
	for _, tt := range []struct {
		quota, mmap, want int64
	}{
		{0, 0, 10 << 30},
		{DefaultQuotaBackendBytes, 0, 10 << 30},
		{1 << 30, 0, 1<<30 + (1<<30)/10},
		{8 << 30, 1 << 20, 1 << 20},
	} {
		c := Config{QuotaBackendBytes: tt.quota, InitialMmapSize: tt.mmap}.withDefaults()
		if c.InitialMmapSize != tt.want {
			t.Errorf("quota %d, initial mmap size %d: got %d, want %d", tt.quota, tt.mmap, c.InitialMmapSize, tt.want)
		}
	}
}
