package pacedclient

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMix(t *testing.T) {
	mix, err := ParseMix("3 /ping, 1 /long-query?duration=1s, 1 PUT /users/{hot}")
	require.NoError(t, err)
	assert.Equal(t, []Entry{{3, "GET", "/ping"}, {1, "GET", "/long-query?duration=1s"}, {1, "PUT", "/users/{hot}"}}, mix)

	for _, bad := range []string{"", "x /ping", "0 /ping", "-1 /ping", "3 ping", "3", "1 /a /b", "1 DELETE /users/1", "1 PUT /a /b"} {
		_, err := ParseMix(bad)
		assert.Error(t, err, "mix %q", bad)
	}
}

func TestPickFollowsWeights(t *testing.T) {
	mix := []Entry{{3, "GET", "/a"}, {1, "GET", "/b"}}
	got := map[string]int{}
	for r := range totalWeight(mix) {
		got[Pick(mix, r).Path]++
	}
	assert.Equal(t, map[string]int{"/a": 3, "/b": 1}, got)
}

func TestExpand(t *testing.T) {
	last := func(n int) int { return n - 1 }
	path, id := Expand("/users/{user}", 10000, 100, last)
	assert.Equal(t, "/users/10000", path)
	assert.Equal(t, 10000, id)
	path, id = Expand("/users/{hot}/messages", 10000, 100, last)
	assert.Equal(t, "/users/100/messages", path)
	assert.Equal(t, 100, id)
	path, id = Expand("/ping", 10000, 100, last)
	assert.Equal(t, "/ping", path)
	assert.Equal(t, 0, id)
}

func TestWriteBodyRestoresTheSeededUser(t *testing.T) {
	assert.JSONEq(t, `{"username":"user00042","email":"user00042@example.com"}`, WriteBody(42))
}
