package config

import (
	"strings"
	"testing"
)

func TestMaxConcurrentJobsDefaultsAndPool(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		jobs       int
		pool       int32
	}{
		{"default", "", DefaultMaxConcurrentJobs, 3*DefaultMaxConcurrentJobs + 4},
		{"explicit", "max_concurrent_jobs: 2\n", 2, 10},
		{"explicit_pool_fits", "max_concurrent_jobs: 3\ndatabase: {max_conns: 8}\n", 3, 8},
		// A file written before the key sized the pool by hand: the
		// default shrinks to what that pool serves instead of failing.
		{"pool_without_key", "database: {max_conns: 8}\n", 3, 8},
		{"small_pool_without_key", "database: {max_conns: 4}\n", 1, 4},
		{"big_pool_without_key", "database: {max_conns: 200}\n", DefaultMaxConcurrentJobs, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.yaml+jobYAML())
			if c.MaxConcurrentJobs != tt.jobs || c.PoolSize() != tt.pool {
				t.Errorf("max_concurrent_jobs %d, pool %d; want %d, %d", c.MaxConcurrentJobs, c.PoolSize(), tt.jobs, tt.pool)
			}
		})
	}
}

func TestMaxConcurrentJobsValidation(t *testing.T) {
	for _, tt := range []struct{ name, yaml, msg string }{
		{"zero", "max_concurrent_jobs: 0\n", "0 is less than 1; want how many jobs may run at once, e.g. 12"},
		{"negative", "max_concurrent_jobs: -3\n", "-3 is less than 1"},
		{"pool_too_small", "max_concurrent_jobs: 12\ndatabase: {max_conns: 10}\n",
			"need at least 26 database connections (each holds its job lock's and needs one more) but database.max_conns is 10; want max_concurrent_jobs: 4 or less, or database.max_conns: 40"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, tt.yaml+jobYAML())
			if len(ps) != 1 || ps[0].Key != "max_concurrent_jobs" || !strings.Contains(ps[0].Msg, tt.msg) {
				t.Fatalf("problems %v; want one on max_concurrent_jobs containing %q", ps, tt.msg)
			}
		})
	}
}
