package webui

// Charts drawn on the server as inline SVG: they need no script (the
// pages' CSP allows none inline), scale with the page (viewBox), take
// their colours from portal.css (classes, no inline style) and carry their
// numbers as text: a <title> and <desc> naming what they show, a tooltip
// per hour, data-* attributes, and the tables beside them on the page.

import (
	"cmp"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Series is one row of values per hour; a chart stacks its series in
// order, the first at the bottom.
type Series struct {
	// Key names the series in data-* attributes and its CSS class
	// ("s-" + Key): "uploads", "success", "http_error".
	Key string
	// Name is how the text alternatives call it: "HTTP error".
	Name   string
	Values []int64 // one per hour
}

// BarChart draws values per hour (UTC) as SVG bars, stacked when it has
// several series.
type BarChart struct {
	// ID prefixes the ids of the chart's elements; unique in the page.
	ID    string
	Title string // "Uploads per hour (UTC)"
	// Unit is what a value counts, in the text alternatives: "uploads".
	Unit   string
	Hours  []time.Time // the start of each hour, oldest first
	Series []Series
	// Format writes a value for the labels; nil writes the number.
	Format func(int64) string
	// Width and Height are the size of its viewBox (nil: 720 by 200);
	// the page scales it to its box, text and all, so a chart drawn
	// narrow keeps its labels legible.
	Width, Height float64
}

// The bar chart's margins around the plot, in viewBox units (the left
// one grows with the maximum's label).
const plotRight, plotTop, plotBot = 12.0, 14.0, 36.0

// plotLeft is the left margin: room for the maximum's label at about 7
// units a character (12-unit text).
func (c BarChart) plotLeft(peak int64) float64 {
	return max(36, 10+7*float64(len([]rune(c.format(peak)))))
}

func (c BarChart) size() (w, h float64) {
	return cmp.Or(c.Width, 720), cmp.Or(c.Height, 200)
}

// svgWriter builds SVG text; every string it is given goes out escaped.
type svgWriter struct{ strings.Builder }

func (w *svgWriter) printf(format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = template.HTMLEscapeString(s)
		}
	}
	fmt.Fprintf(&w.Builder, format, args...)
}

// num writes a coordinate with at most two decimals.
func num(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}

func (c BarChart) format(v int64) string {
	if c.Format != nil {
		return c.Format(v)
	}
	return strconv.FormatInt(v, 10)
}

// totals returns each hour's sum over the series, the largest sum and the
// index of its (first) hour.
func (c BarChart) totals() (sums []int64, peak int64, at int) {
	sums = make([]int64, len(c.Hours))
	for _, s := range c.Series {
		for i := range sums {
			if i < len(s.Values) {
				sums[i] += s.Values[i]
			}
		}
	}
	for i, v := range sums {
		if v > peak {
			peak, at = v, i
		}
	}
	return sums, peak, at
}

// hourSpan writes an hour as "2026-01-02 10:00–11:00 UTC".
func hourSpan(h time.Time) string {
	h = h.UTC()
	return h.Format("2006-01-02 15:04") + "–" + h.Add(time.Hour).Format("15:04") + " UTC"
}

// Description is the chart's text alternative: the period, the totals and
// the busiest hour.
func (c BarChart) Description() string {
	n := len(c.Hours)
	if n == 0 {
		return "No hours to show."
	}
	sums, peak, at := c.totals()
	var total int64
	for _, v := range sums {
		total += v
	}
	first, end := c.Hours[0].UTC(), c.Hours[n-1].UTC().Add(time.Hour)
	d := fmt.Sprintf("%d hours from %s to %s UTC: %s %s in all", n, first.Format("2006-01-02 15:04"),
		end.Format("2006-01-02 15:04"), c.format(total), c.Unit)
	if len(c.Series) > 1 {
		var parts []string
		for _, s := range c.Series {
			var t int64
			for _, v := range s.Values {
				t += v
			}
			parts = append(parts, s.Name+" "+c.format(t))
		}
		d += " (" + strings.Join(parts, ", ") + ")"
	}
	if peak == 0 {
		return d + "."
	}
	return d + fmt.Sprintf("; the most in one hour: %s, %s.", c.format(peak), hourSpan(c.Hours[at]))
}

// SVG draws the chart: one group per hour (class "hour", with its values
// in data-* attributes and a tooltip), one bar per non-zero value, the
// maximum and zero labelled on the y axis, hours or days on the x axis.
func (c BarChart) SVG() template.HTML {
	n := len(c.Hours)
	sums, peak, _ := c.totals()
	chartW, chartH := c.size()
	var w svgWriter
	w.printf(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="%s" viewBox="0 0 %s %s" role="img" `+
		`aria-labelledby="%s-title %s-desc" data-hours="%d" data-max="%d">`,
		c.ID, num(chartW), num(chartH), c.ID, c.ID, n, peak)
	w.printf(`<title id="%s-title">%s</title><desc id="%s-desc">%s</desc>`, c.ID, c.Title, c.ID, c.Description())
	x0, x1, y0, y1 := c.plotLeft(peak), chartW-plotRight, chartH-plotBot, plotTop
	plotH := y0 - y1
	// Axes: the maximum and the middle as grid lines, the base line, the
	// maximum and zero labelled.
	w.printf(`<g class="axis"><line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, num(x0), num(y1), num(x1), num(y1))
	w.printf(`<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, num(x0), num(y1+plotH/2), num(x1), num(y1+plotH/2))
	w.printf(`<line class="base" x1="%s" y1="%s" x2="%s" y2="%s"/>`, num(x0), num(y0), num(x1), num(y0))
	w.printf(`<text class="ylabel max" x="%s" y="%s" data-value="%d">%s</text>`, num(x0-6), num(y1+4), peak, c.format(peak))
	w.printf(`<text class="ylabel" x="%s" y="%s">0</text></g>`, num(x0-6), num(y0+4))
	slot := (x1 - x0) / float64(max(n, 1))
	barW := max(slot*0.8, 1)
	w.printf(`<g class="bars">`)
	for i, h := range c.Hours {
		x := x0 + float64(i)*slot
		w.printf(`<g class="hour" data-hour="%s" data-total="%d"`, h.UTC().Format(time.RFC3339), sums[i])
		var tip []string
		for _, s := range c.Series {
			v := value(s.Values, i)
			w.printf(` data-%s="%d"`, s.Key, v)
			if len(c.Series) > 1 {
				tip = append(tip, s.Name+" "+c.format(v))
			}
		}
		text := hourSpan(h) + ": " + c.format(sums[i]) + " " + c.Unit
		if len(tip) > 0 {
			text += " (" + strings.Join(tip, ", ") + ")"
		}
		w.printf(`><title>%s</title><rect class="hit" x="%s" y="%s" width="%s" height="%s"/>`,
			text, num(x), num(y1), num(slot), num(plotH))
		top := y0
		for _, s := range c.Series {
			v := value(s.Values, i)
			if v <= 0 || peak == 0 {
				continue
			}
			bh := plotH * float64(v) / float64(peak)
			top -= bh
			w.printf(`<rect class="bar s-%s" x="%s" y="%s" width="%s" height="%s"/>`,
				s.Key, num(x+(slot-barW)/2), num(top), num(barW), num(bh))
		}
		w.printf(`</g>`)
	}
	w.printf(`</g>`)
	c.xLabels(&w, x0, slot, y0)
	w.printf(`<text class="unit" x="%s" y="%s">UTC</text>`, num(x1), num(chartH-4))
	if peak == 0 {
		w.printf(`<text class="none" x="%s" y="%s">none in this period</text>`, num((x0+x1)/2), num(y1+plotH/2-4))
	}
	w.printf(`</svg>`)
	return template.HTML(w.String())
}

func value(vs []int64, i int) int64 {
	if i < len(vs) {
		return vs[i]
	}
	return 0
}

// labelSteps are the hours between x labels to choose from (each divides
// a day, so labels fall on the same hours every day).
var labelSteps = []int{1, 2, 3, 4, 6, 12, 24}

// xLabels marks the hours at the start of which a label fits: "15:00", or
// the date at midnight; with a day between labels, only dates.
func (c BarChart) xLabels(w *svgWriter, left, slot, y float64) {
	step := 24
	for _, s := range labelSteps {
		if float64(s)*slot >= 44 {
			step = s
			break
		}
	}
	w.printf(`<g class="xlabels">`)
	for i, h := range c.Hours {
		h = h.UTC()
		if h.Hour()%step != 0 {
			continue
		}
		x := left + float64(i)*slot
		label := h.Format("15:04")
		if h.Hour() == 0 {
			label = h.Format("Jan 2")
		}
		w.printf(`<line class="tick" x1="%s" y1="%s" x2="%s" y2="%s"/><text x="%s" y="%s">%s</text>`,
			num(x), num(y), num(x), num(y+4), num(x), num(y+16), label)
	}
	w.printf(`</g>`)
}

// Sparkline draws series per hour as small lines sharing one scale, and
// optionally marks a moment (an endpoint's failing since).
type Sparkline struct {
	// Label is its accessible name, with the numbers.
	Label  string
	Hours  []time.Time
	Series []Series
	// Mark, when within the hours, is drawn as a vertical line titled
	// MarkLabel.
	Mark      *time.Time
	MarkLabel string
}

// The sparkline's geometry, in viewBox units.
const sparkW, sparkH = 168.0, 32.0

// SVG draws the sparkline: a polyline with a point per hour for each
// series that is not all zeros.
func (s Sparkline) SVG() template.HTML {
	n := len(s.Hours)
	var peak int64
	for _, se := range s.Series {
		for _, v := range se.Values {
			peak = max(peak, v)
		}
	}
	var w svgWriter
	w.printf(`<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 %s %s" role="img" aria-label="%s" data-hours="%d" data-max="%d">`,
		num(sparkW), num(sparkH), s.Label, n, peak)
	w.printf(`<title>%s</title><line class="base" x1="0" y1="%s" x2="%s" y2="%s"/>`,
		s.Label, num(sparkH-1), num(sparkW), num(sparkH-1))
	// The time axis runs from the start of the first hour to the end of
	// the last (the current one): each hour's point at its middle, the
	// mark where its moment falls, so a mark in the current hour is drawn
	// inside the line's span, not past its end.
	at := func(hours float64) float64 { return 1 + hours*(sparkW-2)/float64(max(n, 1)) }
	x := func(i int) float64 { return at(float64(i) + 0.5) }
	if s.Mark != nil && n > 0 {
		first := s.Hours[0].UTC()
		if m := s.Mark.UTC(); !m.Before(first) && m.Before(s.Hours[n-1].Add(time.Hour)) {
			mx := at(float64(m.Sub(first)) / float64(time.Hour))
			w.printf(`<g class="mark"><title>%s</title><line x1="%s" y1="3" x2="%s" y2="%s"/><circle cx="%s" cy="3" r="2.5"/></g>`,
				s.MarkLabel, num(mx), num(mx), num(sparkH), num(mx))
		}
	}
	for _, se := range s.Series {
		if !slices.ContainsFunc(se.Values, func(v int64) bool { return v != 0 }) {
			continue // a line along the base says nothing
		}
		pts := make([]string, 0, n)
		for i := range n {
			y := sparkH - 2
			if peak > 0 {
				y -= (sparkH - 4) * float64(value(se.Values, i)) / float64(peak)
			}
			pts = append(pts, num(x(i))+","+num(y))
		}
		w.printf(`<polyline class="line s-%s" points="%s"/>`, se.Key, strings.Join(pts, " "))
	}
	w.printf(`</svg>`)
	return template.HTML(w.String())
}
