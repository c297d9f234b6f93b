package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sample is one reading of a service's process: resident memory, goroutines and open file
// descriptors, from the Go and process collectors on its health port's /metrics (libs/server
// serves the default Prometheus registry, which carries both).
type sample struct {
	At         time.Duration // since the start of the run
	Service    string
	RSSBytes   float64
	Goroutines float64
	OpenFDs    float64
}

var sampledMetrics = map[string]func(*sample, float64){
	"process_resident_memory_bytes": func(s *sample, v float64) { s.RSSBytes = v },
	"go_goroutines":                 func(s *sample, v float64) { s.Goroutines = v },
	"process_open_fds":              func(s *sample, v float64) { s.OpenFDs = v },
}

func scrape(ctx context.Context, name, healthAddr string, at time.Duration) (sample, error) {
	s := sample{At: at, Service: name}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+healthAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if set, ok := sampledMetrics[name]; ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return s, fmt.Errorf("%s %s: %w", name, val, err)
			}
			set(&s, v)
			found++
		}
	}
	if found != len(sampledMetrics) {
		return s, fmt.Errorf("%s: found %d of %d process metrics", name, found, len(sampledMetrics))
	}
	return s, sc.Err()
}

// series is one service's curve of one metric.
type series struct {
	Service string
	Points  [][2]float64 // minutes, value
}

func seriesOf(samples []sample, metric func(sample) float64) []series {
	by := map[string]*series{}
	for _, s := range samples {
		if by[s.Service] == nil {
			by[s.Service] = &series{Service: s.Service}
		}
		by[s.Service].Points = append(by[s.Service].Points, [2]float64{s.At.Minutes(), metric(s)})
	}
	var out []series
	for _, s := range by {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// chartSVG draws the three metrics as stacked panels, one line per service, with a legend.
func chartSVG(samples []sample, title string) string {
	panels := []struct {
		name string
		get  func(sample) float64
	}{
		{"RSS (MiB)", func(s sample) float64 { return s.RSSBytes / (1 << 20) }},
		{"goroutines", func(s sample) float64 { return s.Goroutines }},
		{"open file descriptors", func(s sample) float64 { return s.OpenFDs }},
	}
	const w, ph, left, right, top, gap = 900.0, 200.0, 60.0, 190.0, 40.0, 50.0
	h := top + float64(len(panels))*(ph+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="20" font-size="14">%s</text>`+"\n", left, xmlEscape(title))
	maxX := 0.0
	for _, s := range samples {
		maxX = math.Max(maxX, s.At.Minutes())
	}
	if maxX == 0 {
		maxX = 1
	}
	for pi, p := range panels {
		y0 := top + float64(pi)*(ph+gap)
		ss := seriesOf(samples, p.get)
		maxY := 0.0
		for _, s := range ss {
			for _, pt := range s.Points {
				maxY = math.Max(maxY, pt[1])
			}
		}
		maxY = niceCeil(maxY)
		pw := w - left - right
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12">%s</text>`+"\n", left, y0-6, p.name)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, pw, ph)
		for k := 0; k <= 4; k++ {
			v := maxY * float64(k) / 4
			y := y0 + ph - ph*float64(k)/4
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
				left, left+pw, y, y, left-4, y+4, strconv.FormatFloat(v, 'f', -1, 64))
		}
		for k := 0; k <= 6; k++ {
			x := left + pw*float64(k)/6
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.1f min</text>`+"\n", x, y0+ph+14, maxX*float64(k)/6)
		}
		for si, s := range ss {
			var pts []string
			for _, pt := range s.Points {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", left+pw*pt[0]/maxX, y0+ph-ph*pt[1]/maxY))
			}
			col := palette[si%len(palette)]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", col, strings.Join(pts, " "))
			if pi == 0 {
				fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
					w-right+12, top+float64(si)*16, col, w-right+26, top+float64(si)*16+9, xmlEscape(s.Service))
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= v {
			return m * mag
		}
	}
	return 10 * mag
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// curveSummary is one service's first, last and peak reading of each metric.
type curveSummary struct {
	Service                   string
	RSSFirst, RSSLast, RSSMax float64 // MiB
	GorFirst, GorLast, GorMax float64
	FDFirst, FDLast, FDMax    float64
}

// summariseCurves compares the steady state, not start-up: "first" is the reading after the
// first rotation period has passed (warm-up), given as warm.
func summariseCurves(samples []sample, warm time.Duration) []curveSummary {
	by := map[string]*curveSummary{}
	var names []string
	for _, s := range samples {
		if s.At < warm {
			continue
		}
		c := by[s.Service]
		rss := s.RSSBytes / (1 << 20)
		if c == nil {
			c = &curveSummary{Service: s.Service, RSSFirst: rss, GorFirst: s.Goroutines, FDFirst: s.OpenFDs}
			by[s.Service] = c
			names = append(names, s.Service)
		}
		c.RSSLast, c.GorLast, c.FDLast = rss, s.Goroutines, s.OpenFDs
		c.RSSMax, c.GorMax, c.FDMax = math.Max(c.RSSMax, rss), math.Max(c.GorMax, s.Goroutines), math.Max(c.FDMax, s.OpenFDs)
	}
	sort.Strings(names)
	var out []curveSummary
	for _, n := range names {
		out = append(out, *by[n])
	}
	return out
}

// metricSum adds up every series of a counter or gauge on a service's /metrics (0 when the
// service cannot be reached: callers compare before and after).
func metricSum(ctx context.Context, healthAddr, name string) float64 {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+healthAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}
