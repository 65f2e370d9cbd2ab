package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// tokenProvider is one kind of token (--auth-token).
type tokenProvider interface {
	// info resolves a token; rev is the current auth revision.
	info(ctx context.Context, token string, rev uint64) (*AuthInfo, bool)
	// assign makes a token for user, known once the returned function ran.
	assign(user string, rev uint64, prefix string, index uint64) (string, func(), error)
	enable()
	disable()
	invalidateUser(user string)
	genTokenPrefix() (string, error)
}

func newTokenProvider(lg *zap.Logger, cfg Config) (tokenProvider, error) {
	kind, opts, err := decomposeOpts(cfg.TokenOpts)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "", "simple":
		lg.Warn("simple token is not cryptographically signed")
		return &simpleTokens{lg: lg, ttl: cfg.TokenTTL, now: cfg.Now, indexWaiter: cfg.IndexWaiter,
			tokens: map[string]simpleToken{}}, nil
	case "jwt":
		return newJWTTokens(lg, opts, cfg.Now)
	default:
		return nil, fmt.Errorf("auth: unknown token type %q in --auth-token %q (want simple or jwt)", kind, cfg.TokenOpts)
	}
}

// decomposeOpts splits "kind,k=v,k=v" (etcd's --auth-token syntax).
func decomposeOpts(s string) (string, map[string]string, error) {
	parts := strings.Split(s, ",")
	opts := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.Contains(v, "=") {
			return "", nil, fmt.Errorf("auth: invalid token option %q in --auth-token %q", p, s)
		}
		if _, dup := opts[k]; dup {
			return "", nil, fmt.Errorf("auth: token option %q given twice in --auth-token %q", k, s)
		}
		opts[k] = v
	}
	return parts[0], opts, nil
}

func redactToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:12]
}

const (
	tokenLetters      = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	simpleTokenLength = 16
)

type simpleToken struct {
	user   string
	expiry time.Time
}

// simpleTokens are etcd's simple tokens: in memory, per member, assigned by applied
// Authenticate entries, valid for ttl since their last use.
type simpleTokens struct {
	lg          *zap.Logger
	ttl         time.Duration
	now         func() time.Time
	indexWaiter func(uint64) <-chan struct{}

	mu      sync.Mutex
	enabled bool
	tokens  map[string]simpleToken
}

func (t *simpleTokens) genTokenPrefix() (string, error) {
	b := make([]byte, simpleTokenLength)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(tokenLetters))))
		if err != nil {
			return "", fmt.Errorf("auth: generate token: %w", err)
		}
		b[i] = tokenLetters[n.Int64()]
	}
	return string(b), nil
}

func (t *simpleTokens) assign(user string, _ uint64, prefix string, index uint64) (string, func(), error) {
	token := fmt.Sprintf("%s.%d", prefix, index)
	return token, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.enabled {
			return
		}
		now := t.now()
		for k, v := range t.tokens { // expired tokens go here, not in a goroutine
			if now.After(v.expiry) {
				delete(t.tokens, k)
			}
		}
		if _, ok := t.tokens[token]; ok {
			t.lg.Error("failed to assign already-used simple token to a user",
				zap.String("user-name", user), zap.String("token", redactToken(token)))
		}
		t.tokens[token] = simpleToken{user: user, expiry: now.Add(t.ttl)}
	}, nil
}

func (t *simpleTokens) info(ctx context.Context, token string, rev uint64) (*AuthInfo, bool) {
	prefix, idx, ok := strings.Cut(token, ".")
	if !ok || strings.Contains(idx, ".") || prefix == "" {
		return nil, false
	}
	index, err := strconv.ParseUint(idx, 10, 64)
	if err != nil {
		return nil, false
	}
	if t.indexWaiter != nil {
		select {
		case <-t.indexWaiter(index):
		case <-ctx.Done():
			return nil, false
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tk, ok := t.tokens[token]
	if !ok {
		return nil, false
	}
	now := t.now()
	if now.After(tk.expiry) {
		delete(t.tokens, token)
		return nil, false
	}
	tk.expiry = now.Add(t.ttl)
	t.tokens[token] = tk
	return &AuthInfo{Username: tk.user, Revision: rev}, true
}

func (t *simpleTokens) enable() {
	t.mu.Lock()
	t.enabled = true
	t.mu.Unlock()
}

func (t *simpleTokens) disable() {
	t.mu.Lock()
	t.enabled = false
	t.tokens = map[string]simpleToken{}
	t.mu.Unlock()
}

func (t *simpleTokens) invalidateUser(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range t.tokens {
		if v.user == user {
			delete(t.tokens, k)
		}
	}
}
