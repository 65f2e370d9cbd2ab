package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAutoCompactionFlags: etcd's defaults (periodic, "0" = off), a bare number is hours
// in periodic mode and revisions in revision mode, and etcd's errors for a bad mode or
// retention.
func TestAutoCompactionFlags(t *testing.T) {
	c := mustParse(t, nil)
	if c.AutoCompactionMode != "periodic" || c.AutoCompactionRetention != "0" || c.autoCompactionRetention != 0 {
		t.Fatalf("defaults: %q %q %v", c.AutoCompactionMode, c.AutoCompactionRetention, c.autoCompactionRetention)
	}
	for _, tc := range []struct {
		args []string
		mode string
		want time.Duration
	}{
		{[]string{"--auto-compaction-retention=1"}, "periodic", time.Hour},
		{[]string{"--auto-compaction-retention=1h30m"}, "periodic", 90 * time.Minute},
		{[]string{"--auto-compaction-mode=revision", "--auto-compaction-retention=1000"}, "revision", 1000},
	} {
		c := mustParse(t, tc.args)
		if c.AutoCompactionMode != tc.mode || c.autoCompactionRetention != tc.want {
			t.Errorf("%q: mode %q retention %v, want %q %v", tc.args, c.AutoCompactionMode, c.autoCompactionRetention, tc.mode, tc.want)
		}
		if sc := c.serverConfig(nil, &tlsConfigs{}); sc.AutoCompactionMode != tc.mode || sc.AutoCompactionRetention != tc.want {
			t.Errorf("%q: server config %q %v", tc.args, sc.AutoCompactionMode, sc.AutoCompactionRetention)
		}
	}
	c = mustParse(t, nil, "ETCD_AUTO_COMPACTION_RETENTION=2s")
	if c.autoCompactionRetention != 2*time.Second {
		t.Errorf("from env: %v", c.autoCompactionRetention)
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--auto-compaction-mode=foo", "--auto-compaction-retention=1"}, `unknown auto-compaction-mode "foo"`},
		{[]string{"--auto-compaction-mode=", "--auto-compaction-retention=1"}, "undefined auto-compaction-mode"},
		{[]string{"--auto-compaction-retention=abc"}, `error parsing CompactionRetention: time: invalid duration "abc"`},
		{[]string{"--auto-compaction-retention=-1"}, `error parsing CompactionRetention: time: missing unit in duration "-1"`},
	} {
		_, err := parseConfig(tc.args, nil)
		if err == nil || err.Error() != tc.err {
			t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("auto-compaction-mode: revision\nauto-compaction-retention: 50\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = mustParse(t, []string{"--config-file", path})
	if c.AutoCompactionMode != "revision" || c.autoCompactionRetention != 50 {
		t.Errorf("config file: %q %v", c.AutoCompactionMode, c.autoCompactionRetention)
	}
}

// TestMaxLearnersFlag: etcd's default 1; 0 allows none; negative fails as etcd's
// bootstrap does.
func TestMaxLearnersFlag(t *testing.T) {
	if c := mustParse(t, nil); c.MaxLearners != 1 || c.serverConfig(nil, &tlsConfigs{}).MaxLearners != 1 {
		t.Fatalf("default: %d", c.MaxLearners)
	}
	if c := mustParse(t, []string{"--max-learners=3"}); c.serverConfig(nil, &tlsConfigs{}).MaxLearners != 3 {
		t.Fatalf("3: %d", c.serverConfig(nil, &tlsConfigs{}).MaxLearners)
	}
	if c := mustParse(t, []string{"--max-learners=0"}); c.serverConfig(nil, &tlsConfigs{}).MaxLearners >= 0 {
		t.Fatalf("0 must allow no learner: server config %d", c.serverConfig(nil, &tlsConfigs{}).MaxLearners)
	}
	if _, err := parseConfig([]string{"--max-learners=-1"}, nil); err == nil || err.Error() != "membership: too many learner members in cluster" {
		t.Fatalf("-1: %v", err)
	}
}

// TestFileRetentionFlags: --max-snapshots and --max-wals default to 5 as etcd's; 0 is
// unlimited; a negative value is a flag parse error, as etcd's uint flags give.
func TestFileRetentionFlags(t *testing.T) {
	sc := mustParse(t, nil).serverConfig(nil, &tlsConfigs{})
	if sc.MaxSnapshots != 5 || sc.MaxWALs != 5 {
		t.Fatalf("defaults: %d %d", sc.MaxSnapshots, sc.MaxWALs)
	}
	sc = mustParse(t, []string{"--max-snapshots=2", "--max-wals=0"}).serverConfig(nil, &tlsConfigs{})
	if sc.MaxSnapshots != 2 || sc.MaxWALs >= 0 {
		t.Fatalf("2 and 0 (unlimited): %d %d", sc.MaxSnapshots, sc.MaxWALs)
	}
	if _, err := parseConfig([]string{"--max-snapshots=-1"}, nil); err == nil || err.Error() != `invalid value "-1" for flag -max-snapshots: parse error` {
		t.Fatalf("-1: %v", err)
	}
}

func TestForceNewClusterFlag(t *testing.T) {
	if mustParse(t, nil).serverConfig(nil, &tlsConfigs{}).ForceNewCluster {
		t.Fatal("on by default")
	}
	if !mustParse(t, []string{"--force-new-cluster"}).serverConfig(nil, &tlsConfigs{}).ForceNewCluster {
		t.Fatal("--force-new-cluster not passed on")
	}
	if !mustParse(t, nil, "ETCD_FORCE_NEW_CLUSTER=true").ForceNewCluster {
		t.Fatal("ETCD_FORCE_NEW_CLUSTER not read")
	}
}
