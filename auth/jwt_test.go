package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/cairn-kv/cairn/proto/etcdserverpb"
)

func writeKeys(t *testing.T, priv crypto.Signer) (privPath, pubPath string) {
	t.Helper()
	dir := t.TempDir()
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath = filepath.Join(dir, "priv.pem"), filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}

func TestJWTTokens(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		method string
		key    crypto.Signer
	}{{"RS256", rsaKey}, {"PS384", rsaKey}, {"ES256", ecKey}, {"EdDSA", edKey}} {
		t.Run(c.method, func(t *testing.T) {
			priv, pub := writeKeys(t, c.key)
			now := time.Unix(5000, 0)
			clock := func() time.Time { return now }
			s, err := New(Config{BcryptCost: 4, TokenOpts: "jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=" + c.method + ",ttl=1m", Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			tx := newMemTx()
			setupRoot(t, s, tx)
			do(t)(s.AuthEnable(tx))
			tok, commit, err := s.Authenticate("root", "", 9)
			if err != nil || commit != nil {
				t.Fatalf("assign: %v (commit %v)", err, commit != nil)
			}
			ai, err := s.AuthInfoFromToken(context.Background(), tok)
			if err != nil || ai.Username != "root" || ai.Revision != s.Revision() {
				t.Fatalf("info = %+v, %v", ai, err)
			}
			// A verify-only member (public key only) accepts it too.
			v, err := New(Config{TokenOpts: "jwt,pub-key=" + pub + ",sign-method=" + c.method, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			do(t)(nil, v.Restore(true, s.Revision(), tx.users, tx.roles))
			if _, err := v.AuthInfoFromToken(context.Background(), tok); err != nil {
				t.Fatalf("verify-only: %v", err)
			}
			if _, _, err := v.Authenticate("root", "", 1); err == nil {
				t.Fatal("a verify-only member signed a token")
			}
			// An auth change makes the token's revision old.
			do(t)(s.RoleAdd(tx, &pb.AuthRoleAddRequest{Name: "r"}))
			ai, _ = s.AuthInfoFromToken(context.Background(), tok)
			if err := s.IsRangePermitted(ai, []byte("k"), nil); !errors.Is(err, ErrAuthOldRevision) {
				t.Fatalf("old jwt: %v", err)
			}
			now = now.Add(2 * time.Minute)
			if _, err := s.AuthInfoFromToken(context.Background(), tok); !errors.Is(err, ErrInvalidAuthToken) {
				t.Fatalf("expired jwt: %v", err)
			}
		})
	}
	if _, err := New(Config{TokenOpts: "jwt,sign-method=RS256"}); err == nil {
		t.Fatal("jwt without keys accepted")
	}
	if _, err := New(Config{TokenOpts: "bogus"}); err == nil {
		t.Fatal("unknown token type accepted")
	}
}
