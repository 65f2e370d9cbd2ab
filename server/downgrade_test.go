package server

import (
	"errors"
	"testing"
)

// validateDowngradeTarget parses versions as etcd's semver library does and allows only
// the minor version below the cluster's (3.5 for 3.6).
func TestValidateDowngradeTarget(t *testing.T) {
	for v, want := range map[string]error{
		"3.5": nil, "3.5.0": nil, "3.5.17": nil, "3.5.0-rc.1": nil, "3.5.0+build.5": nil, "3.5.0-": nil,
		"3.4": ErrInvalidDowngradeTargetVersion, "3.6": ErrInvalidDowngradeTargetVersion,
		"4.5": ErrInvalidDowngradeTargetVersion, "3.6.16": ErrInvalidDowngradeTargetVersion,
		"": ErrWrongDowngradeVersionFormat, "3": ErrWrongDowngradeVersionFormat, "v3.5": ErrWrongDowngradeVersionFormat,
		"3.5.x": ErrWrongDowngradeVersionFormat, "3.5.0-a..b": ErrWrongDowngradeVersionFormat,
		"3.5.0.1": ErrWrongDowngradeVersionFormat, "3.5-rc": ErrWrongDowngradeVersionFormat,
	} {
		if err := validateDowngradeTarget(v); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", v, err, want)
		}
	}
	if got := clusterMinorVersion(); got != "3.6" {
		t.Errorf("cluster version %q", got)
	}
}
