package daemon

import (
	"context"
	"errors"
	"strings"
	"time"

	sdd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/entraprov/entraprov/internal/jobs"
)

// watchdog pings systemd at half of WatchdogSec while the scheduler loop
// answers, so a wedged worker is restarted; during shutdown it keeps
// pinging (TimeoutStopSec bounds the stop, not the watchdog).
func (d *workerd) watchdog(ctx context.Context) {
	interval, err := sdd.SdWatchdogEnabled(false)
	if err != nil {
		d.log.Warn("watchdog settings unreadable; not pinging", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		actx, cancel := context.WithTimeout(ctx, interval/4)
		err := d.sched.Alive(actx)
		cancel()
		if err != nil && !errors.Is(err, jobs.ErrStopping) {
			d.log.Error("scheduler not answering; withholding the watchdog ping", "err", err)
			continue
		}
		d.notify(sdd.SdNotifyWatchdog)
	}
}

// notify sends sd_notify states (no-op outside systemd).
func (d *workerd) notify(states ...string) {
	var b []string
	for _, s := range states {
		if s = strings.TrimRight(s, "\n"); s != "" {
			b = append(b, s)
		}
	}
	if _, err := sdd.SdNotify(false, strings.Join(b, "\n")); err != nil {
		d.log.Debug("sd_notify failed", "err", err)
	}
}
