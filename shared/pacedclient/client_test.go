package pacedclient

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMix(t *testing.T) {
	mix, err := ParseMix("3 /ping, 1 /long-query?duration=1s")
	require.NoError(t, err)
	assert.Equal(t, []Entry{{3, "/ping"}, {1, "/long-query?duration=1s"}}, mix)

	for _, bad := range []string{"", "x /ping", "0 /ping", "-1 /ping", "3 ping", "3", "1 /a /b"} {
		_, err := ParseMix(bad)
		assert.Error(t, err, "mix %q", bad)
	}
}

func TestPickFollowsWeights(t *testing.T) {
	mix := []Entry{{3, "/a"}, {1, "/b"}}
	got := map[string]int{}
	for r := range totalWeight(mix) {
		got[Pick(mix, r)]++
	}
	assert.Equal(t, map[string]int{"/a": 3, "/b": 1}, got)
}

func TestExpand(t *testing.T) {
	last := func(n int) int { return n - 1 }
	assert.Equal(t, "/users/10000", Expand("/users/{user}", 10000, 100, last))
	assert.Equal(t, "/users/100/messages", Expand("/users/{hot}/messages", 10000, 100, last))
	assert.Equal(t, "/ping", Expand("/ping", 10000, 100, last))
}
