package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// defaultJWTTTL is etcd's default ttl option of jwt tokens.
const defaultJWTTTL = 5 * time.Minute

// jwtTokens are etcd's JWT tokens: claims "username", "revision" and "exp", signed with
// the configured key. Any member with the key verifies them; they carry the auth
// revision they were issued at, so every auth change makes them old.
type jwtTokens struct {
	lg         *zap.Logger
	method     jwt.SigningMethod
	sign       any // nil: verify only (only a public key given)
	verify     any
	ttl        time.Duration
	now        func() time.Time
	parserOpts []jwt.ParserOption
}

func newJWTTokens(lg *zap.Logger, opts map[string]string, now func() time.Time) (*jwtTokens, error) {
	t := &jwtTokens{lg: lg, ttl: defaultJWTTTL, now: now}
	for k := range opts {
		switch k {
		case "pub-key", "priv-key", "sign-method", "ttl":
		default:
			lg.Warn("unknown JWT options", zap.String("key", k))
		}
	}
	if v := opts["ttl"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt ttl %q: %w", v, err)
		}
		t.ttl = d
	}
	t.method = jwt.GetSigningMethod(opts["sign-method"])
	if t.method == nil {
		return nil, fmt.Errorf("auth: invalid auth signature method %q", opts["sign-method"])
	}
	read := func(k string) ([]byte, error) {
		if opts[k] == "" {
			return nil, nil
		}
		b, err := os.ReadFile(opts[k])
		if err != nil {
			return nil, fmt.Errorf("auth: jwt %s: %w", k, err)
		}
		return b, nil
	}
	pubPEM, err := read("pub-key")
	if err != nil {
		return nil, err
	}
	privPEM, err := read("priv-key")
	if err != nil {
		return nil, err
	}
	if len(pubPEM) == 0 && len(privPEM) == 0 {
		return nil, errors.New("auth: jwt: missing key data (pub-key or priv-key)")
	}
	var priv crypto.Signer
	var pub crypto.PublicKey
	switch t.method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		if len(privPEM) > 0 {
			if priv, err = jwt.ParseRSAPrivateKeyFromPEM(privPEM); err != nil {
				return nil, fmt.Errorf("auth: jwt priv-key: %w", err)
			}
		}
		if len(pubPEM) > 0 {
			if pub, err = jwt.ParseRSAPublicKeyFromPEM(pubPEM); err != nil {
				return nil, fmt.Errorf("auth: jwt pub-key: %w", err)
			}
		}
	case *jwt.SigningMethodECDSA:
		if len(privPEM) > 0 {
			if priv, err = jwt.ParseECPrivateKeyFromPEM(privPEM); err != nil {
				return nil, fmt.Errorf("auth: jwt priv-key: %w", err)
			}
		}
		if len(pubPEM) > 0 {
			if pub, err = jwt.ParseECPublicKeyFromPEM(pubPEM); err != nil {
				return nil, fmt.Errorf("auth: jwt pub-key: %w", err)
			}
		}
	case *jwt.SigningMethodEd25519:
		if len(privPEM) > 0 {
			k, err := jwt.ParseEdPrivateKeyFromPEM(privPEM)
			if err != nil {
				return nil, fmt.Errorf("auth: jwt priv-key: %w", err)
			}
			priv = k.(ed25519.PrivateKey)
		}
		if len(pubPEM) > 0 {
			if pub, err = jwt.ParseEdPublicKeyFromPEM(pubPEM); err != nil {
				return nil, fmt.Errorf("auth: jwt pub-key: %w", err)
			}
		}
	default:
		return nil, fmt.Errorf("auth: unsupported jwt sign-method %q (want RS*, PS*, ES* or EdDSA)", t.method.Alg())
	}
	if priv != nil {
		t.sign = priv
		if pub != nil && !publicKeyEqual(priv.Public(), pub) {
			return nil, errors.New("auth: jwt: public and private keys don't match")
		}
		pub = priv.Public()
	}
	t.verify = pub
	t.parserOpts = []jwt.ParserOption{jwt.WithValidMethods([]string{t.method.Alg()}), jwt.WithTimeFunc(now)}
	return t, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *rsa.PublicKey:
		return k.Equal(b)
	case *ecdsa.PublicKey:
		return k.Equal(b)
	case ed25519.PublicKey:
		return k.Equal(b)
	}
	if e, ok := a.(eq); ok {
		return e.Equal(b)
	}
	return false
}

func (t *jwtTokens) enable()                         {}
func (t *jwtTokens) disable()                        {}
func (t *jwtTokens) invalidateUser(string)           {}
func (t *jwtTokens) genTokenPrefix() (string, error) { return "", nil }

func (t *jwtTokens) assign(user string, rev uint64, _ string, _ uint64) (string, func(), error) {
	if t.sign == nil {
		return "", nil, errors.New("auth: token signing attempted with verify-only key")
	}
	tk := jwt.NewWithClaims(t.method, jwt.MapClaims{
		"username": user,
		"revision": rev,
		"exp":      t.now().Add(t.ttl).Unix(),
	})
	s, err := tk.SignedString(t.sign)
	if err != nil {
		return "", nil, fmt.Errorf("auth: sign jwt: %w", err)
	}
	return s, nil, nil
}

func (t *jwtTokens) info(_ context.Context, token string, _ uint64) (*AuthInfo, bool) {
	parsed, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return t.verify, nil }, t.parserOpts...)
	if err != nil || !parsed.Valid {
		t.lg.Warn("failed to parse a JWT token", zap.String("token", redactToken(token)), zap.Error(err))
		return nil, false
	}
	claims, ok := parsed.Claims.(jwt.MapClaims)
	if !ok {
		return nil, false
	}
	user, ok := claims["username"].(string)
	if !ok {
		return nil, false
	}
	rev, ok := claims["revision"].(float64)
	if !ok {
		return nil, false
	}
	return &AuthInfo{Username: user, Revision: uint64(rev)}, true
}
