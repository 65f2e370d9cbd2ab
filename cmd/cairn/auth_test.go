package main

import (
	"testing"
	"time"

	"github.com/cairn-kv/cairn/api"
	"github.com/cairn-kv/cairn/server"
)

// The member serves the Auth service and the edge's permission checks.
var _ api.AuthBackend = (*server.Server)(nil)

func TestAuthFlags(t *testing.T) {
	c, err := parseConfig(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := c.serverConfig(nil, &tlsConfigs{})
	if sc.AuthToken != "simple" || sc.AuthTokenTTL != 300*time.Second || sc.BcryptCost != 10 {
		t.Fatalf("defaults: token %q ttl %v cost %d, want etcd's simple 5m0s 10", sc.AuthToken, sc.AuthTokenTTL, sc.BcryptCost)
	}
	c, err = parseConfig([]string{"--auth-token=jwt,sign-method=RS256,priv-key=/k", "--auth-token-ttl=7", "--bcrypt-cost=4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc = c.serverConfig(nil, &tlsConfigs{})
	if sc.AuthToken != "jwt,sign-method=RS256,priv-key=/k" || sc.AuthTokenTTL != 7*time.Second || sc.BcryptCost != 4 {
		t.Fatalf("flags: token %q ttl %v cost %d", sc.AuthToken, sc.AuthTokenTTL, sc.BcryptCost)
	}
	c, err = parseConfig(nil, []string{"ETCD_AUTH_TOKEN_TTL=9"})
	if err != nil {
		t.Fatal(err)
	}
	if sc := c.serverConfig(nil, &tlsConfigs{}); sc.AuthTokenTTL != 9*time.Second {
		t.Fatalf("ETCD_AUTH_TOKEN_TTL: ttl %v", sc.AuthTokenTTL)
	}
}
