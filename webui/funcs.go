package webui

import (
	"bytes"
	"encoding/json"
	"html/template"
	"strings"
	"time"
)

func (u *UI) funcs() template.FuncMap {
	return template.FuncMap{
		"loginURL": LoginURL,
		"asset":    u.assets.url,
		"bytes":    formatBytes,
		"dur":      humanDuration,
		"ts":       formatTime,
		"tsp": func(t *time.Time) string {
			if t == nil {
				return "—"
			}
			return formatTime(*t)
		},
		"rel":    u.relative,
		"short":  shortID,
		"join":   func(s []string) string { return strings.Join(s, ", ") },
		"pretty": prettyJSON,
		"ms":     func(d time.Duration) int64 { return d.Milliseconds() },
		"rate":   formatRate,
		"latency": func(d *time.Duration) string {
			if d == nil {
				return "—"
			}
			return formatLatency(*d)
		},
		"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"hour": hourSpan,
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				k, _ := kv[i].(string)
				m[k] = kv[i+1]
			}
			return m
		},
		"has": func(list []string, s string) bool {
			for _, v := range list {
				if v == s {
					return true
				}
			}
			return false
		},
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// relative writes t relative to now: "in 3 hours", "5 minutes ago".
func (u *UI) relative(t time.Time) string {
	d := t.Sub(u.cfg.Now())
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = "less than a minute"
	case d < time.Hour:
		s = humanDuration(d.Round(time.Minute))
	case d < 48*time.Hour:
		s = humanDuration(d.Round(time.Hour))
	default:
		s = humanDuration(d.Round(24 * time.Hour))
	}
	if past {
		return s + " ago"
	}
	return "in " + s
}

// shortID abbreviates a UUID to its last 8 digits: the ids are UUIDv7,
// whose first digits are a timestamp that ids written together share.
func shortID(id string) string {
	if len(id) > 8 {
		return "…" + id[len(id)-8:]
	}
	return id
}

// prettyJSON indents a JSON document for display; anything else is shown
// as it is.
func prettyJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}
