package framework

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// headerKeys are the member-specific fields of a ResponseHeader in etcd's gateway JSON.
var headerKeys = []string{"cluster_id", "member_id", "raft_term"}

// JSONNorm says how NormalizeJSON makes two servers' gateway answers comparable.
type JSONNorm struct {
	// Names maps a server-specific string value (a member ID, a URL) to the
	// placeholder it is replaced with, in every JSON string (whole or in part). Names
	// must be long enough (IDs, URLs) not to occur by chance in other values.
	Names map[string]string
	// Blank lists extra object keys whose values are replaced by "<blank>" at any
	// depth (values that legitimately differ, such as dbSize).
	Blank []string
}

// NormalizeJSON parses one JSON document of etcd's HTTP/JSON gateway and returns it
// re-encoded canonically (object keys sorted, no insignificant spaces: protojson's
// output spacing varies by binary), with the ResponseHeader fields cluster_id,
// member_id and raft_term and every n.Blank key replaced by "<blank>", n.Names
// substituted, no-break spaces turned into spaces, and every "members" array sorted
// (member lists are ordered by random member IDs). Revisions are kept.
func NormalizeJSON(body string, n JSONNorm) (string, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("normalize: parse %q: %w", body, err)
	}
	if dec.More() {
		return "", fmt.Errorf("normalize: trailing data after the JSON document in %q", body)
	}
	blank := make(map[string]bool)
	for _, k := range append(append([]string(nil), headerKeys...), n.Blank...) {
		blank[k] = true
	}
	v = normValue(v, n.Names, blank)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("normalize: encode: %w", err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func normValue(v any, names map[string]string, blank map[string]bool) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if blank[k] {
				x[k] = "<blank>"
				continue
			}
			x[k] = normValue(e, names, blank)
			if k == "members" {
				sortByEncoding(x[k])
			}
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normValue(e, names, blank)
		}
		return x
	case string:
		if p, ok := names[x]; ok {
			return p
		}
		// protojson's error texts ("proto: (line 1:8): ...") put a space or a no-break
		// space after "proto:", chosen per binary to keep callers from matching on them.
		x = strings.ReplaceAll(x, "\u00a0", " ")
		// Inside text too: StatusResponse.errors holds "memberID:<id> alarm:NOSPACE ".
		for name, p := range names {
			x = strings.ReplaceAll(x, name, p)
		}
		return x
	default:
		return v
	}
}

func sortByEncoding(v any) {
	arr, ok := v.([]any)
	if !ok {
		return
	}
	keys := make([]string, len(arr))
	for i, e := range arr {
		b, _ := json.Marshal(e)
		keys[i] = string(b)
	}
	sort.Sort(byKey{arr, keys})
}

type byKey struct {
	v    []any
	keys []string
}

func (s byKey) Len() int           { return len(s.v) }
func (s byKey) Less(i, j int) bool { return s.keys[i] < s.keys[j] }
func (s byKey) Swap(i, j int) {
	s.v[i], s.v[j] = s.v[j], s.v[i]
	s.keys[i], s.keys[j] = s.keys[j], s.keys[i]
}
