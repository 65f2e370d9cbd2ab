package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestMaxLearners: --max-learners bounds how many learners member add accepts (etcd's
// default is 1, tested in TestClusterMembershipChanges); 0 accepts none.
func TestMaxLearners(t *testing.T) {
	t.Parallel()
	addLearner := func(m *framework.Member) error {
		return mbWhileUnhealthy(func(ctx context.Context) error {
			_, err := m.Client().MemberAddAsLearner(ctx, []string{fmt.Sprintf("http://127.0.0.1:%d", framework.FreePort(t))})
			return err
		})
	}
	two := start(t, "--max-learners=2")
	for i := 1; i <= 2; i++ {
		if err := addLearner(two); err != nil {
			t.Fatalf("--max-learners=2: learner %d: %v", i, err)
		}
	}
	mbExpectErr(t, "--max-learners=2: a third learner", addLearner(two), rpctypes.ErrTooManyLearners)

	none := start(t, "--max-learners=0")
	mbExpectErr(t, "--max-learners=0: a learner", addLearner(none), rpctypes.ErrTooManyLearners)
}
