package webui

import (
	"fmt"
	"html/template"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A file's timeline, as its page draws it: the file's own moments (stored,
// each event written, deleted or when it expires) on the first lane, and
// each delivery of its events on a lane of its own with a mark per
// attempt. Moments are placed in order, evenly spaced, each labelled with
// its time (UTC): an upload's first delivery comes milliseconds after it,
// its expiry days later, and both stay readable.

// timelineEntry is one moment of a file's timeline.
type timelineEntry struct {
	At   time.Time
	Lane int
	// Kind is the mark: stored, event, expires, deleted, ok (a successful
	// attempt), fail (a failed one) or next (the next try of a pending
	// delivery).
	Kind string
	Text string
}

// timeline is a file's timeline: its lanes' labels, its entries in time
// order (the page's table) and its drawing.
type timeline struct {
	Lanes []string
	// from has, per delivery lane, when its event was written: its span
	// starts there.
	from    map[int]time.Time
	Entries []timelineEntry
	// Attempts, OK and Failed count the attempts shown.
	Attempts, OK, Failed int
}

// fileTimeline builds the timeline of f and its events (with their
// deliveries and attempts).
func fileTimeline(f File, events []Event) timeline {
	tl := timeline{Lanes: []string{"File"}, from: map[int]time.Time{}}
	add := func(at time.Time, lane int, kind, text string) {
		tl.Entries = append(tl.Entries, timelineEntry{At: at.UTC(), Lane: lane, Kind: kind, Text: text})
	}
	if !f.StoredAt.IsZero() {
		add(f.StoredAt, 0, "stored", fmt.Sprintf("stored (%s)", formatBytes(f.SizeBytes)))
	}
	evs := append([]Event(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].CreatedAt.Before(evs[j].CreatedAt) })
	for _, ev := range evs {
		add(ev.CreatedAt, 0, "event", ev.Type+" written")
	}
	switch {
	case f.DeletedAt != nil:
		text := "deleted"
		if f.DeleteReason != "" {
			text += " (" + f.DeleteReason + ")"
		}
		add(*f.DeletedAt, 0, "deleted", text)
	case f.Status == "stored" && !f.ExpiresAt.IsZero():
		add(f.ExpiresAt, 0, "expires", "expires")
	}
	for _, ev := range evs {
		for _, d := range ev.Deliveries {
			tl.Lanes = append(tl.Lanes, ev.Type+" → "+d.EndpointURL)
			tl.from[len(tl.Lanes)-1] = ev.CreatedAt.UTC()
			tl.addDelivery(len(tl.Lanes)-1, ev, d)
		}
	}
	sort.SliceStable(tl.Entries, func(i, j int) bool { return tl.Entries[i].At.Before(tl.Entries[j].At) })
	return tl
}

// addDelivery adds a delivery's attempts (oldest first) and, while it is
// pending, its next try.
func (tl *timeline) addDelivery(lane int, ev Event, d Delivery) {
	for i, at := range d.Attempts {
		ok := at.StatusCode >= 200 && at.StatusCode <= 299
		text := fmt.Sprintf("%s to %s, attempt %d: %s", ev.Type, d.EndpointURL, i+1, attemptResult(at))
		kind := "fail"
		if ok {
			kind = "ok"
			tl.OK++
		} else {
			tl.Failed++
		}
		if i == len(d.Attempts)-1 && (d.Status == "succeeded" || d.Status == "failed") {
			text += "; delivery " + d.Status
		}
		tl.Attempts++
		tl.Entries = append(tl.Entries, timelineEntry{At: at.At.UTC(), Lane: lane, Kind: kind, Text: text})
	}
	if d.Status == "pending" && d.NextAttemptAt != nil {
		tl.Entries = append(tl.Entries, timelineEntry{At: d.NextAttemptAt.UTC(), Lane: lane, Kind: "next",
			Text: fmt.Sprintf("%s to %s: next try", ev.Type, d.EndpointURL)})
	}
}

// attemptResult says how an attempt went: "HTTP 200 in 12 ms".
func attemptResult(at Attempt) string {
	var s string
	if at.StatusCode != 0 {
		s = "HTTP " + strconv.Itoa(at.StatusCode)
	}
	if at.Error != "" {
		s = strings.TrimSpace(s + " " + at.Error)
	}
	if s == "" {
		s = "no answer"
	}
	return s + " in " + formatLatency(at.Duration)
}

// The timeline's geometry, in pixels (it does not shrink: a long one
// scrolls sideways).
const (
	tlLabelW, tlSlotW, tlTop, tlLaneH = 230.0, 78.0, 38.0, 28.0
)

// Description is the timeline's text alternative.
func (tl timeline) Description() string {
	if len(tl.Entries) == 0 {
		return "Nothing happened to this file yet."
	}
	first, last := tl.Entries[0].At, tl.Entries[len(tl.Entries)-1].At
	return fmt.Sprintf("From %s to %s: %d deliveries with %d attempts (%d succeeded, %d failed).",
		formatTime(first), formatTime(last), len(tl.Lanes)-1, tl.Attempts, tl.OK, tl.Failed)
}

// SVG draws the timeline: a column per distinct moment with its time on
// top, a lane per row of Lanes, a mark per entry with its text as a
// tooltip.
func (tl timeline) SVG() template.HTML {
	var slots []time.Time
	slotOf := map[int64]int{}
	for _, e := range tl.Entries {
		ms := e.At.UnixMilli()
		if _, ok := slotOf[ms]; !ok {
			slotOf[ms] = len(slots)
			slots = append(slots, e.At)
		}
	}
	width := tlLabelW + float64(max(len(slots), 1))*tlSlotW + 8
	height := tlTop + float64(len(tl.Lanes))*tlLaneH + 6
	var w svgWriter
	w.printf(`<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 %s %s" width="%s" height="%s" `+
		`role="img" aria-labelledby="timeline-title timeline-desc" data-lanes="%d" data-moments="%d">`,
		num(width), num(height), num(width), num(height), len(tl.Lanes), len(slots))
	w.printf(`<title id="timeline-title">Timeline of the file and its deliveries (UTC)</title><desc id="timeline-desc">%s</desc>`,
		tl.Description())
	x := func(slot int) float64 { return tlLabelW + (float64(slot)+0.5)*tlSlotW }
	laneY := func(lane int) float64 { return tlTop + (float64(lane)+0.5)*tlLaneH }
	// Each moment's column: the date when it changes, the time, a guide.
	w.printf(`<g class="moments">`)
	prevDate := ""
	for i, t := range slots {
		if d := t.Format("Jan 2"); d != prevDate {
			w.printf(`<text class="date" x="%s" y="13">%s</text>`, num(x(i)), d)
			prevDate = d
		}
		w.printf(`<text class="time" x="%s" y="28">%s</text><line class="guide" x1="%s" y1="%s" x2="%s" y2="%s"/>`,
			num(x(i)), t.Format("15:04:05"), num(x(i)), num(tlTop-4), num(x(i)), num(height-4))
	}
	w.printf(`</g>`)
	// Each lane: its label, a line, and for a delivery a span from its
	// event's moment to its last attempt.
	end := map[int]int{}
	for _, e := range tl.Entries {
		end[e.Lane] = slotOf[e.At.UnixMilli()]
	}
	for i, label := range tl.Lanes {
		y := laneY(i)
		short := label
		if r := []rune(strings.Replace(strings.Replace(label, "https://", "", 1), "http://", "", 1)); len(r) > 34 {
			short = string(r[:33]) + "…"
		} else {
			short = string(r)
		}
		w.printf(`<g class="lane"><text class="lane-label" x="6" y="%s"><title>%s</title>%s</text>`, num(y+4), label, short)
		w.printf(`<line class="lane-line" x1="%s" y1="%s" x2="%s" y2="%s"/>`, num(tlLabelW), num(y), num(width-4), num(y))
		from, ok := slotOf[tl.from[i].UnixMilli()]
		if e, has := end[i]; ok && has && i > 0 {
			w.printf(`<line class="span" x1="%s" y1="%s" x2="%s" y2="%s"/>`, num(x(from)), num(y), num(x(e)), num(y))
		}
		w.printf(`</g>`)
	}
	// Marks at the same moment on the same lane (a file stored and its
	// event written) stand side by side.
	type place struct{ slot, lane int }
	count, seen := map[place]int{}, map[place]int{}
	for _, e := range tl.Entries {
		count[place{slotOf[e.At.UnixMilli()], e.Lane}]++
	}
	for _, e := range tl.Entries {
		p := place{slotOf[e.At.UnixMilli()], e.Lane}
		cx, cy := x(p.slot)+16*(float64(seen[p])-float64(count[p]-1)/2), laneY(e.Lane)
		seen[p]++
		w.printf(`<g class="tl-mark tl-%s" data-at="%s"><title>%s: %s</title>`, e.Kind, e.At.Format(time.RFC3339Nano),
			formatTime(e.At), e.Text)
		switch e.Kind {
		case "ok", "fail", "next":
			w.printf(`<circle cx="%s" cy="%s" r="6"/>`, num(cx), num(cy))
		case "event", "expires":
			w.printf(`<polygon points="%s,%s %s,%s %s,%s %s,%s"/>`, num(cx), num(cy-7), num(cx+7), num(cy),
				num(cx), num(cy+7), num(cx-7), num(cy))
		default:
			w.printf(`<rect x="%s" y="%s" width="11" height="11"/>`, num(cx-5.5), num(cy-5.5))
		}
		w.printf(`</g>`)
	}
	w.printf(`</svg>`)
	return template.HTML(w.String())
}

// endpointName is how the pages name an endpoint in little room: its
// description, or its URL's host and path.
func endpointName(description, rawURL string) string {
	if description != "" {
		return description
	}
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return u.Host + u.Path
	}
	return rawURL
}
