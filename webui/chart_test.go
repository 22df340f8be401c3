package webui

import (
	"encoding/xml"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// svgNode is an element of a parsed SVG.
type svgNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []svgNode  `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n svgNode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n svgNode) num(tb testing.TB, name string) float64 {
	tb.Helper()
	f, err := strconv.ParseFloat(n.attr(name), 64)
	if err != nil {
		tb.Fatalf("<%s %s=%q>: %v", n.XMLName.Local, name, n.attr(name), err)
	}
	return f
}

// is reports whether n is a tag element with every class of classes.
func (n svgNode) is(tag string, classes ...string) bool {
	have := strings.Fields(n.attr("class"))
	for _, c := range classes {
		if !slices.Contains(have, c) {
			return false
		}
	}
	return n.XMLName.Local == tag
}

// all returns n's descendants (and n) that are tag elements with classes,
// in document order.
func (n svgNode) all(tag string, classes ...string) []svgNode {
	var out []svgNode
	if n.is(tag, classes...) {
		out = append(out, n)
	}
	for _, c := range n.Nodes {
		out = append(out, c.all(tag, classes...)...)
	}
	return out
}

// one returns the only descendant that is a tag element with classes.
func (n svgNode) one(tb testing.TB, tag string, classes ...string) svgNode {
	tb.Helper()
	got := n.all(tag, classes...)
	if len(got) != 1 {
		tb.Fatalf("%d <%s class=%q> elements, want 1", len(got), tag, strings.Join(classes, " "))
	}
	return got[0]
}

// child returns n's first child element tag.
func (n svgNode) child(tb testing.TB, tag string) svgNode {
	tb.Helper()
	for _, c := range n.Nodes {
		if c.XMLName.Local == tag {
			return c
		}
	}
	tb.Fatalf("<%s> has no <%s>", n.XMLName.Local, tag)
	return svgNode{}
}

// parseSVG parses drawn SVG as XML (so it is well-formed, and every text
// was escaped).
func parseSVG(tb testing.TB, h template.HTML) svgNode {
	tb.Helper()
	var root svgNode
	if err := xml.Unmarshal([]byte(h), &root); err != nil {
		tb.Fatalf("not well-formed SVG: %v\n%s", err, h)
	}
	if root.XMLName.Local != "svg" {
		tb.Fatalf("root element <%s>", root.XMLName.Local)
	}
	return root
}

// hoursFrom returns n consecutive hours from start.
func hoursFrom(start time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = start.Add(time.Duration(i) * time.Hour)
	}
	return out
}

// A bar chart of 24 hours has a slot per hour with its value and tooltip,
// a bar per hour with uploads, heights in proportion with the labelled
// maximum at the top, hour labels every few hours with the date at
// midnight, and a title and description saying it all in UTC.
func TestBarChartBars(t *testing.T) {
	start := time.Date(2026, 3, 4, 13, 0, 0, 0, time.UTC)
	values := make([]int64, 24)
	values[2], values[11], values[23] = 3, 6, 1 // 15:00, midnight, 12:00
	c := BarChart{ID: "c1", Title: "Uploads per hour (UTC)", Unit: "uploads", Hours: hoursFrom(start, 24),
		Series: []Series{{Key: "uploads", Name: "uploads", Values: values}}}
	svg := parseSVG(t, c.SVG())
	if svg.attr("data-hours") != "24" || svg.attr("data-max") != "6" || svg.attr("role") != "img" ||
		svg.attr("aria-labelledby") != "c1-title c1-desc" {
		t.Errorf("svg attributes %v", svg.Attrs)
	}
	if got := svg.child(t, "title").Text; got != "Uploads per hour (UTC)" {
		t.Errorf("title %q", got)
	}
	wantDesc := "24 hours from 2026-03-04 13:00 to 2026-03-05 13:00 UTC: 10 uploads in all; " +
		"the most in one hour: 6, 2026-03-05 00:00–01:00 UTC."
	if got := svg.child(t, "desc").Text; got != wantDesc {
		t.Errorf("desc %q\nwant %q", got, wantDesc)
	}
	hours := svg.all("g", "hour")
	if len(hours) != 24 {
		t.Fatalf("%d hour slots, want 24", len(hours))
	}
	for i, g := range hours {
		if g.attr("data-hour") != start.Add(time.Duration(i)*time.Hour).Format(time.RFC3339) ||
			g.attr("data-uploads") != strconv.FormatInt(values[i], 10) {
			t.Errorf("slot %d: %v", i, g.Attrs)
		}
	}
	if tip := hours[2].child(t, "title").Text; tip != "2026-03-04 15:00–16:00 UTC: 3 uploads" {
		t.Errorf("tooltip %q", tip)
	}
	bars := svg.all("rect", "bar", "s-uploads")
	if len(bars) != 3 {
		t.Fatalf("%d bars, want 3 (the hours with uploads)", len(bars))
	}
	max := svg.one(t, "text", "ylabel", "max")
	if max.Text != "6" || max.attr("data-value") != "6" {
		t.Errorf("max label %q %v", max.Text, max.Attrs)
	}
	// Heights in proportion; the tallest reaches the maximum's line.
	h := []float64{bars[0].num(t, "height"), bars[1].num(t, "height"), bars[2].num(t, "height")}
	if h[1] != 2*h[0] || h[1] != 6*h[2] {
		t.Errorf("heights %v, want 3:6:1", h)
	}
	grid := svg.all("line", "grid")[0]
	if top := bars[1].num(t, "y"); top != grid.num(t, "y1") {
		t.Errorf("tallest bar's top %v, maximum's line %v", top, grid.num(t, "y1"))
	}
	var labels []string
	for _, l := range svg.one(t, "g", "xlabels").all("text") {
		labels = append(labels, l.Text)
	}
	if got := strings.Join(labels, " "); got != "14:00 16:00 18:00 20:00 22:00 Mar 5 02:00 04:00 06:00 08:00 10:00 12:00" {
		t.Errorf("x labels %q", got)
	}
	if svg.one(t, "text", "unit").Text != "UTC" {
		t.Error("the axis does not say UTC")
	}
}

// A stacked chart has a segment per non-zero value of an hour, bottom to
// top in the series' order, the values in data-* attributes and the
// tooltip; its maximum is the largest hour's sum.
func TestBarChartStacked(t *testing.T) {
	start := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	c := BarChart{ID: "d", Title: "Attempts", Unit: "attempts", Hours: hoursFrom(start, 3), Series: []Series{
		{Key: "success", Name: "success", Values: []int64{4, 0, 1}},
		{Key: "http_error", Name: "HTTP error", Values: []int64{2, 0, 0}},
	}}
	svg := parseSVG(t, c.SVG())
	if svg.attr("data-max") != "6" || svg.one(t, "text", "max").Text != "6" {
		t.Errorf("max %q", svg.attr("data-max"))
	}
	hours := svg.all("g", "hour")
	if len(hours) != 3 || hours[0].attr("data-success") != "4" || hours[0].attr("data-http_error") != "2" ||
		hours[0].attr("data-total") != "6" {
		t.Fatalf("hours %v", hours)
	}
	if tip := hours[0].child(t, "title").Text; tip != "2026-03-04 00:00–01:00 UTC: 6 attempts (success 4, HTTP error 2)" {
		t.Errorf("tooltip %q", tip)
	}
	first := hours[0].all("rect", "bar")
	if len(first) != 2 || !first[0].is("rect", "s-success") || !first[1].is("rect", "s-http_error") {
		t.Fatalf("first hour's segments %v", first)
	}
	// The error segment sits on the success one.
	if ok, bad := first[0], first[1]; bad.num(t, "y")+bad.num(t, "height") != ok.num(t, "y") ||
		ok.num(t, "height") != 2*bad.num(t, "height") {
		t.Errorf("segments %v / %v", ok.Attrs, bad.Attrs)
	}
	if n := len(hours[1].all("rect", "bar")); n != 0 {
		t.Errorf("an empty hour has %d bars", n)
	}
	if n := len(hours[2].all("rect", "bar")); n != 1 {
		t.Errorf("the third hour has %d bars, want 1", n)
	}
	if got := c.Description(); !strings.Contains(got, "7 attempts in all (success 5, HTTP error 2)") {
		t.Errorf("desc %q", got)
	}
}

// Seven days: 168 slots, the labels fit (a day apart), values go
// through Format; a period without anything says so; text is escaped.
func TestBarChartWeekEmptyAndEscaped(t *testing.T) {
	start := time.Date(2026, 3, 1, 5, 0, 0, 0, time.UTC)
	vals := make([]int64, 168)
	vals[100] = 3 << 20
	c := BarChart{ID: "b", Title: `Bytes <per> "hour" & more`, Unit: "uploaded", Hours: hoursFrom(start, 168),
		Series: []Series{{Key: "bytes", Name: "bytes", Values: vals}}, Format: formatBytes, Width: 440}
	h := c.SVG()
	svg := parseSVG(t, h)
	if n := len(svg.all("g", "hour")); n != 168 {
		t.Errorf("%d slots, want 168", n)
	}
	if got := svg.child(t, "title").Text; got != `Bytes <per> "hour" & more` {
		t.Errorf("title %q", got)
	}
	if strings.Contains(string(h), "<per>") {
		t.Error("the title is not escaped")
	}
	if max := svg.one(t, "text", "max"); max.Text != "3.0 MiB" || max.attr("data-value") != strconv.Itoa(3<<20) {
		t.Errorf("max %q %v", max.Text, max.Attrs)
	}
	// A narrow chart of a week has room for the dates only.
	var labels []string
	for _, l := range svg.one(t, "g", "xlabels").all("text") {
		labels = append(labels, l.Text)
	}
	if got := strings.Join(labels, " "); got != "Mar 2 Mar 3 Mar 4 Mar 5 Mar 6 Mar 7 Mar 8" {
		t.Errorf("x labels %q", got)
	}
	if svg.attr("viewBox") != "0 0 440 200" {
		t.Errorf("viewBox %q", svg.attr("viewBox"))
	}

	empty := BarChart{ID: "e", Title: "Uploads", Unit: "uploads", Hours: hoursFrom(start, 24),
		Series: []Series{{Key: "uploads", Values: make([]int64, 24)}}}
	svg = parseSVG(t, empty.SVG())
	if len(svg.all("rect", "bar")) != 0 || svg.one(t, "text", "max").Text != "0" || len(svg.all("text", "none")) != 1 {
		t.Error("an empty chart draws bars, or does not say it is empty")
	}
	if d := empty.Description(); !strings.HasSuffix(d, "0 uploads in all.") {
		t.Errorf("desc %q", d)
	}
}

// A sparkline has a point per hour for each series with anything in it,
// and marks the failing moment when it lies within its hours.
func TestSparkline(t *testing.T) {
	start := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	since := start.Add(20*time.Hour + 30*time.Minute)
	s := Sparkline{Label: "attempts", Hours: hoursFrom(start, 24), Mark: &since, MarkLabel: "failing since then",
		Series: []Series{{Key: "success", Values: make([]int64, 24)}, {Key: "http_error", Values: make([]int64, 24)}}}
	s.Series[0].Values[3] = 5
	s.Series[1].Values[21] = 10
	svg := parseSVG(t, s.SVG())
	lines := svg.all("polyline")
	if len(lines) != 2 || svg.attr("data-hours") != "24" || svg.attr("data-max") != "10" {
		t.Fatalf("%d lines, attributes %v", len(lines), svg.Attrs)
	}
	for _, l := range lines {
		if pts := strings.Fields(l.attr("points")); len(pts) != 24 {
			t.Errorf("%s has %d points, want 24", l.attr("class"), len(pts))
		}
	}
	mark := svg.one(t, "g", "mark")
	x := mark.one(t, "line").num(t, "x1")
	// 20.5 hours into the day, on the scale of the points (hour i's at
	// 1 + (i+0.5)*166/24): between hour 20's point and hour 21's.
	if want := 1 + 20.5*166/24; x < want-0.01 || x > want+0.01 {
		t.Errorf("mark at x=%v, want %v", x, want)
	}
	pts := strings.Fields(lines[0].attr("points"))
	first, _, _ := strings.Cut(pts[0], ",")
	last, _, _ := strings.Cut(pts[23], ",")
	if first != "4.46" || last != "163.54" {
		t.Errorf("points from x=%s to x=%s, want the middles of the first and last hours", first, last)
	}
	// A mark in the last minute of the current hour is inside the drawing.
	late := start.Add(24*time.Hour - time.Minute)
	s.Mark = &late
	if x := parseSVG(t, s.SVG()).one(t, "g", "mark").one(t, "line").num(t, "x1"); x > sparkW-1 || x < 160 {
		t.Errorf("a mark in the current hour at x=%v, outside the drawing (width %v)", x, sparkW)
	}
	if mark.child(t, "title").Text != "failing since then" {
		t.Error("mark's title")
	}
	// Only failures: one line; a mark before the hours: none.
	s.Series[0].Values[3] = 0
	early := start.Add(-time.Hour)
	s.Mark = &early
	svg = parseSVG(t, s.SVG())
	if l := svg.all("polyline"); len(l) != 1 || !l[0].is("polyline", "s-http_error") || len(svg.all("g", "mark")) != 0 {
		t.Errorf("lines %v, marks %d", l, len(svg.all("g", "mark")))
	}
}

// A file's timeline: the file's moments on the first lane, a lane per
// delivery with a mark per attempt, a column per distinct moment with its
// time, marks of one moment side by side, entries in time order.
func TestFileTimeline(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	next := t0.Add(time.Hour)
	f := File{ID: "f", Status: "stored", SizeBytes: 2048, StoredAt: t0, ExpiresAt: t0.Add(7 * 24 * time.Hour)}
	events := []Event{{ID: "e", Type: "file.uploaded", CreatedAt: t0, Deliveries: []Delivery{
		{EndpointURL: "http://ok.example/hook", Status: "succeeded", Attempts: []Attempt{{At: ms(20), StatusCode: 200}}},
		{EndpointURL: "http://bad.example/hook", Status: "pending", NextAttemptAt: &next, Attempts: []Attempt{
			{At: ms(21), StatusCode: 500, Error: "boom", Duration: 3 * time.Millisecond},
			{At: ms(1500), Error: "timeout: no response within 15s", Duration: 15 * time.Second}}},
	}}}
	tl := fileTimeline(f, events)
	if len(tl.Lanes) != 3 || tl.Attempts != 3 || tl.OK != 1 || tl.Failed != 2 {
		t.Fatalf("lanes %v, attempts %d (%d ok, %d failed)", tl.Lanes, tl.Attempts, tl.OK, tl.Failed)
	}
	var kinds []string
	for i, e := range tl.Entries {
		kinds = append(kinds, e.Kind)
		if i > 0 && e.At.Before(tl.Entries[i-1].At) {
			t.Errorf("entry %d out of order", i)
		}
	}
	if got := strings.Join(kinds, " "); got != "stored event ok fail fail next expires" {
		t.Errorf("entries %q", got)
	}
	if e := tl.Entries[3]; e.Text != "file.uploaded to http://bad.example/hook, attempt 1: HTTP 500 boom in 3 ms" || e.Lane != 2 {
		t.Errorf("entry %+v", e)
	}
	svg := parseSVG(t, tl.SVG())
	if svg.attr("data-lanes") != "3" || svg.attr("data-moments") != "6" {
		t.Errorf("attributes %v", svg.Attrs)
	}
	if len(svg.all("g", "tl-ok")) != 1 || len(svg.all("g", "tl-fail")) != 2 || len(svg.all("g", "tl-event")) != 1 ||
		len(svg.all("g", "tl-next")) != 1 || len(svg.all("g", "tl-expires")) != 1 {
		t.Error("marks: want 1 ok, 2 failed, 1 event, 1 next try, 1 expiry")
	}
	stored, event := svg.one(t, "g", "tl-stored").one(t, "rect"), svg.one(t, "g", "tl-event").one(t, "polygon")
	if sx, ex := stored.num(t, "x")+5.5, strings.Split(event.attr("points"), ",")[0]; strconv.FormatFloat(sx+16, 'f', -1, 64) != ex {
		t.Errorf("stored at x=%v and event at x=%s: want them side by side, 16 apart", sx, ex)
	}
	var times []string
	for _, tx := range svg.all("text", "time") {
		times = append(times, tx.Text)
	}
	if got := strings.Join(times, " "); got != "10:00:00 10:00:00 10:00:00 10:00:01 11:00:00 10:00:00" {
		t.Errorf("moments %q", got)
	}
	if d := svg.all("text", "date"); len(d) != 2 || d[0].Text != "Mar 4" || d[1].Text != "Mar 11" {
		t.Errorf("dates %v", d)
	}
	if spans := svg.all("line", "span"); len(spans) != 2 || spans[0].num(t, "x1") != spans[1].num(t, "x1") {
		t.Errorf("spans %v: want one per delivery, from the event's moment", spans)
	}
	if got := svg.child(t, "desc").Text; !strings.Contains(got, "2 deliveries with 3 attempts (1 succeeded, 2 failed)") {
		t.Errorf("desc %q", got)
	}
}

// The period parameter: absent or 24h is a day, 7d a week; anything else
// (or twice) is refused.
func TestParsePeriod(t *testing.T) {
	for q, want := range map[string]time.Duration{"": 24 * time.Hour, "period=24h": 24 * time.Hour,
		"period=7d": 7 * 24 * time.Hour, "period=": 0, "period=1y": 0, "period=7D": 0, "period=168h": 0,
		"period=24h&period=7d": 0, "period=%00": 0} {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := parsePeriod(v)
		if ok != (want != 0) || p.D != want {
			t.Errorf("%q: %v %v, want %v", q, p.D, ok, want)
		}
	}
}

func TestFormatLatencyAndRate(t *testing.T) {
	for d, want := range map[time.Duration]string{48 * time.Millisecond: "48 ms", 1250 * time.Millisecond: "1.2 s",
		90 * time.Second: "1.5 min", 3 * time.Hour: "3.0 h"} {
		if got := formatLatency(d); got != want {
			t.Errorf("formatLatency(%s) = %q, want %q", d, got, want)
		}
	}
	one, none, some := 1.0, 0.0, 0.995
	for r, want := range map[*float64]string{&one: "100%", &none: "0%", &some: "99.5%", nil: "—"} {
		if got := formatRate(r); got != want {
			t.Errorf("formatRate = %q, want %q", got, want)
		}
	}
}
