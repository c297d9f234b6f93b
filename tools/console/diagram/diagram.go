// Package diagram draws the platform topology as an SVG: the platform namespace and each
// tenant as a box, every workload with its SPIFFE ID, every allowed call as an arrow, and the
// client's way in. The same drawing is committed as docs/topology.svg (make topology-svg) and
// served by the console, so the picture in the README and the one people hover over cannot
// differ, and both follow topology.yaml because they are drawn from it.
//
// The output is deterministic (file order, fixed arithmetic), which lets a test compare the
// committed file byte for byte. Each workload is a <g class="workload"> carrying
// data-workload and data-spiffe-id, and each allowed call a <g class="call"> carrying
// data-from and data-to, so the console's script and its browser test find them by name.
package diagram

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/ztbank/ztbank/libs/topology"
)

// Layout constants, in SVG user units (pixels at 100 %).
const (
	margin      = 20.0
	boxPad      = 16.0 // inside a tenant or platform box
	boxHeader   = 22.0 // room above the first row, where arrows from the box above come in
	boxFooter   = 28.0 // the box's title sits at its foot, clear of those arrows
	nodeH       = 58.0
	nodeMinW    = 210.0
	monoCharW   = 5.6 // width of one 9.5 px monospace character, generously rounded
	nodeGapX    = 40.0
	rowGapY     = 46.0
	boxGapX     = 40.0
	boxGapY     = 56.0
	bulge       = 44.0 // room to the right of a tenant's column for calls that skip a row
	clientH     = 40.0
	legendH     = 54.0
	headerTitle = "ztbank topology"
)

// node is one drawn workload (or the client).
type node struct {
	w          topology.Workload
	x, y, wd   float64
	row        int
	isClient   bool
	isExternal bool
}

func (n *node) cx() float64     { return n.x + n.wd/2 }
func (n *node) bottom() float64 { return n.y + nodeH }

// box is the platform namespace or one tenant.
type box struct {
	title, subtitle string
	x, y, w, h      float64
	// titleTop puts the title in the top right corner (the platform box, whose arrows leave
	// through its foot) instead of the foot (tenants, whose arrows come in at the top).
	titleTop       bool
	header, footer float64
	nodes          []*node
	rows           [][]*node
}

// Render writes the topology as a standalone SVG document.
func Render(w io.Writer, t *topology.Topology) error {
	_, err := w.Write(SVG(t))
	return err
}

// SVG returns the topology as a standalone SVG document.
func SVG(t *topology.Topology) []byte {
	byName := map[string]*node{}
	nodeWidth := func(wl topology.Workload) float64 {
		return math.Max(nodeMinW, math.Ceil(float64(len(wl.ID.String()))*monoCharW)+24)
	}

	// The platform box holds the edge and the ingress side by side: both are the tenants'
	// front doors, neither sits behind the other for a client.
	platform := &box{title: "namespace " + t.PlatformNamespace, titleTop: true, header: 28, footer: boxPad}
	var platformRow []*node
	for _, wl := range t.Workloads {
		if wl.Tenant != "" {
			continue
		}
		n := &node{w: wl, wd: nodeWidth(wl), isExternal: wl.External}
		byName[wl.Name] = n
		platformRow = append(platformRow, n)
	}
	if len(platformRow) > 0 {
		platform.rows = [][]*node{platformRow}
		platform.nodes = platformRow
	}

	// Each tenant's workloads are layered by the longest chain of calls that reaches them
	// inside the tenant, so every arrow in a tenant points down.
	var tenants []*box
	for _, tn := range t.Tenants {
		b := &box{title: "tenant " + tn.Name, subtitle: "database " + tn.Database, header: boxHeader, footer: boxFooter}
		var mine []topology.Workload
		for _, wl := range t.Workloads {
			if wl.Tenant == tn.Name {
				mine = append(mine, wl)
			}
		}
		depth := layers(mine)
		for _, wl := range mine {
			n := &node{w: wl, wd: nodeWidth(wl), row: depth[wl.Name], isExternal: wl.External}
			byName[wl.Name] = n
			b.nodes = append(b.nodes, n)
			for len(b.rows) <= n.row {
				b.rows = append(b.rows, nil)
			}
			b.rows[n.row] = append(b.rows[n.row], n)
		}
		tenants = append(tenants, b)
	}

	// Sizes: each box is as wide as its widest row (plus the bulge for row-skipping calls).
	sizeBox := func(b *box, extra float64) {
		inner := 0.0
		for _, row := range b.rows {
			inner = math.Max(inner, rowWidth(row))
		}
		b.w = inner + 2*boxPad + extra
		b.h = b.header + float64(len(b.rows))*nodeH + float64(max(len(b.rows)-1, 0))*rowGapY + b.footer
	}
	for _, b := range tenants {
		sizeBox(b, bulge)
	}
	if platform.rows != nil {
		sizeBox(platform, 0)
	}

	tenantsW := 0.0
	tenantsH := 0.0
	for i, b := range tenants {
		if i > 0 {
			tenantsW += boxGapX
		}
		tenantsW += b.w
		tenantsH = math.Max(tenantsH, b.h)
	}
	width := math.Max(tenantsW, platform.w) + 2*margin
	width = math.Max(width, 640)

	// Positions, top to bottom: title, client, platform box, tenants, legend.
	y := margin + 28
	client := &node{isClient: true, wd: 260}
	client.x, client.y = (width-client.wd)/2, y
	y += clientH + boxGapY
	if platform.rows != nil {
		platform.x, platform.y = (width-platform.w)/2, y
		placeRows(platform, 0)
		y += platform.h + boxGapY
	}
	x := (width - tenantsW) / 2
	for _, b := range tenants {
		b.x, b.y = x, y
		placeRows(b, bulge)
		x += b.w + boxGapX
	}
	y += tenantsH + 24
	legendY := y
	height := legendY + legendH + margin

	var out bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&out, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="Helvetica, Arial, sans-serif" role="img" aria-labelledby="ztbank-topology-title">`+"\n",
		num(width), num(height), num(width), num(height))
	p(`<title id="ztbank-topology-title">%s: %d tenants, %d workloads, %d allowed calls (generated from topology.yaml)</title>`+"\n",
		headerTitle, len(t.Tenants), len(t.Workloads), len(t.Edges()))
	p(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#2f5f8f"/></marker>` +
		`<marker id="arrow-in" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>` + "\n")
	p(`<style>.workload rect{fill:#fff;stroke:#2f5f8f;stroke-width:1.5}.workload.external rect{stroke-dasharray:5 3;fill:#f7f7f7}` +
		`.workload .name{font-size:13px;font-weight:bold;fill:#1a1a1a}.workload .id{font-size:9.5px;font-family:Menlo, Consolas, monospace;fill:#333}` +
		`.workload .note{font-size:9.5px;fill:#666}.call path{fill:none;stroke:#2f5f8f;stroke-width:1.4}.tenant>rect,.platform>rect{fill:#eef3f8;stroke:#9ab;stroke-width:1}` +
		`.platform>rect{fill:#f4f1ea}.box-title{font-size:13px;font-weight:bold;fill:#333}.box-sub{font-size:10.5px;fill:#666}</style>` + "\n")
	p(`<rect x="0" y="0" width="%s" height="%s" fill="#ffffff"/>`+"\n", num(width), num(height))
	p(`<text x="%s" y="%s" font-size="16" font-weight="bold" fill="#1a1a1a">%s</text>`+"\n", num(margin), num(margin+12), esc(headerTitle))
	p(`<text x="%s" y="%s" font-size="11" fill="#666" text-anchor="end">trust domain %s</text>`+"\n", num(width-margin), num(margin+12), esc(t.TrustDomain.Name()))

	// The client and its arrows to every front door it can reach.
	p(`<g class="client"><rect x="%s" y="%s" width="%s" height="%s" rx="20" fill="#fff" stroke="#555" stroke-width="1.2"/>`,
		num(client.x), num(client.y), num(client.wd), num(clientH))
	p(`<text x="%s" y="%s" font-size="12" text-anchor="middle" fill="#1a1a1a">client: HTTPS + OIDC access token</text></g>`+"\n",
		num(client.cx()), num(client.y+clientH/2+4))
	fronts := slices.Clone(platformRow)
	for i, n := range fronts {
		label := "cluster ingress"
		if n.w.Public != "" {
			label = "HTTPS " + n.w.Public + " locally"
		}
		x1 := client.x + client.wd*float64(i+1)/float64(len(fronts)+1)
		x2, y2 := n.x+n.wd/4, n.y
		y1 := client.y + clientH
		p(`<g class="ingress" data-to="%s"><path d="M%s,%s C%s,%s %s,%s %s,%s" fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow-in)"/>`,
			esc(n.w.Name), num(x1), num(y1), num(x1), num((y1+y2)/2), num(x2), num((y1+y2)/2), num(x2), num(y2-2))
		p(`<text x="%s" y="%s" font-size="10" fill="#555" text-anchor="%s">%s</text></g>`+"\n",
			num((x1+x2)/2+sign(x2-x1)*6), num((y1+y2)/2-2), anchorFor(x2-x1), esc(label))
	}

	if platform.rows != nil {
		drawBox(&out, platform, "platform")
	}
	for _, b := range tenants {
		drawBox(&out, b, "tenant")
	}

	// Calls are drawn after the boxes so arrows stay visible over box backgrounds, and each
	// node's incoming arrows are spread along its top so they do not land on one point.
	edges := t.Edges()
	inbound := map[string][]string{}
	outbound := map[string][]string{}
	for _, e := range edges {
		from, to := byName[e[0]], byName[e[1]]
		if from == nil || to == nil || !vertical(from, to) {
			continue
		}
		inbound[e[1]] = append(inbound[e[1]], e[0])
		outbound[e[0]] = append(outbound[e[0]], e[1])
	}
	for _, list := range []map[string][]string{inbound, outbound} {
		for k, names := range list {
			slices.SortStableFunc(names, func(a, b string) int { return cmpFloat(byName[a].cx(), byName[b].cx()) })
			list[k] = names
		}
	}
	spread := func(n *node, names []string, name string) float64 {
		i := slices.Index(names, name)
		return n.x + n.wd*float64(i+1)/float64(len(names)+1)
	}
	for _, e := range edges {
		from, to := byName[e[0]], byName[e[1]]
		if from == nil || to == nil {
			continue
		}
		var d string
		switch {
		case from.y == to.y: // side by side in one row
			y := from.y + nodeH/2
			x1, x2 := from.x+from.wd, to.x
			if to.x < from.x {
				x1, x2 = from.x, to.x+to.wd
			}
			d = fmt.Sprintf("M%s,%s L%s,%s", num(x1), num(y), num(x2-sign(x2-x1)*2), num(y))
		case !vertical(from, to): // skips a row inside a tenant: around the right-hand side
			x1, y1 := from.x+from.wd, from.y+nodeH/2
			x2, y2 := to.x+to.wd, to.y+nodeH/2
			xr := math.Max(x1, x2) + bulge - 6
			d = fmt.Sprintf("M%s,%s C%s,%s %s,%s %s,%s", num(x1), num(y1), num(xr), num(y1), num(xr), num(y2), num(x2+2), num(y2))
		default:
			x1, y1 := spread(from, outbound[e[0]], e[1]), from.bottom()
			x2, y2 := spread(to, inbound[e[1]], e[0]), to.y
			my := (y1 + y2) / 2
			d = fmt.Sprintf("M%s,%s C%s,%s %s,%s %s,%s", num(x1), num(y1), num(x1), num(my), num(x2), num(my), num(x2), num(y2-2))
		}
		p(`<g class="call" data-from="%s" data-to="%s"><title>%s may call %s (mTLS; every other pair is refused in the handshake)</title><path d="%s" marker-end="url(#arrow)"/></g>`+"\n",
			esc(e[0]), esc(e[1]), esc(e[0]), esc(e[1]), d)
	}

	// Legend.
	lx := margin
	p(`<g class="legend" font-size="11" fill="#333">`)
	p(`<path d="M%s,%s L%s,%s" stroke="#2f5f8f" stroke-width="1.4" marker-end="url(#arrow)"/>`, num(lx), num(legendY+8), num(lx+34), num(legendY+8))
	p(`<text x="%s" y="%s">allowed call over mutual TLS with SPIFFE IDs; every pair without an arrow is refused in the TLS handshake</text>`, num(lx+44), num(legendY+12))
	p(`<rect x="%s" y="%s" width="34" height="16" fill="#f7f7f7" stroke="#2f5f8f" stroke-dasharray="5 3"/>`, num(lx), num(legendY+24))
	p(`<text x="%s" y="%s">external: a caller the platform admits but does not run locally</text>`, num(lx+44), num(legendY+36))
	p("</g>\n</svg>\n")
	return out.Bytes()
}

// vertical reports whether a call goes from one row straight to the next one down (or from
// the platform box into a tenant), as opposed to skipping a row or staying in one.
func vertical(from, to *node) bool {
	if from.y == to.y {
		return false
	}
	if from.w.Tenant != "" && from.w.Tenant == to.w.Tenant {
		return to.row == from.row+1
	}
	return true
}

// layers returns each workload's row: the length of the longest chain of calls inside the
// tenant that reaches it. The topology's catalogue guarantees the calls form no cycle; a
// cycle (an invalid file) is cut instead of looping.
func layers(ws []topology.Workload) map[string]int {
	in := map[string]bool{}
	for _, w := range ws {
		in[w.Name] = true
	}
	depth := map[string]int{}
	for _, w := range ws {
		depth[w.Name] = 0
	}
	for range ws { // Bellman-Ford style relaxation: at most len(ws) rounds on a DAG
		changed := false
		for _, w := range ws {
			for _, c := range w.Calls {
				if in[c] && depth[c] < depth[w.Name]+1 && depth[w.Name]+1 < len(ws) {
					depth[c] = depth[w.Name] + 1
					changed = true
				}
			}
		}
		if !changed {
			break
		}
	}
	// Drop empty rows so the layers are dense.
	used := map[int]bool{}
	for _, d := range depth {
		used[d] = true
	}
	remap := map[int]int{}
	next := 0
	for d := 0; d < len(ws); d++ {
		if used[d] {
			remap[d] = next
			next++
		}
	}
	for k, d := range depth {
		depth[k] = remap[d]
	}
	return depth
}

// rowWidth is a row of nodes side by side, gaps included: what sizes a box and centres the row in it.
func rowWidth(row []*node) float64 {
	w := 0.0
	for i, n := range row {
		if i > 0 {
			w += nodeGapX
		}
		w += n.wd
	}
	return w
}

// placeRows positions a box's nodes: rows top to bottom, each row centred in the box
// (leaving the right-hand bulge free in tenants).
func placeRows(b *box, extra float64) {
	innerW := b.w - 2*boxPad - extra
	for r, row := range b.rows {
		x := b.x + boxPad + (innerW-rowWidth(row))/2
		y := b.y + b.header + float64(r)*(nodeH+rowGapY)
		for _, n := range row {
			n.x, n.y, n.row = x, y, r
			x += n.wd + nodeGapX
		}
	}
}

func drawBox(out *bytes.Buffer, b *box, class string) {
	fmt.Fprintf(out, `<g class="%s" data-name="%s"><rect x="%s" y="%s" width="%s" height="%s" rx="8"/>`,
		class, esc(strings.TrimPrefix(strings.TrimPrefix(b.title, "tenant "), "namespace ")), num(b.x), num(b.y), num(b.w), num(b.h))
	if b.titleTop {
		fmt.Fprintf(out, `<text class="box-title" x="%s" y="%s" text-anchor="end">%s</text>`+"\n", num(b.x+b.w-boxPad), num(b.y+18), esc(b.title))
	} else {
		fmt.Fprintf(out, `<text class="box-title" x="%s" y="%s">%s</text>`, num(b.x+boxPad), num(b.y+b.h-9), esc(b.title))
		fmt.Fprintf(out, `<text class="box-sub" x="%s" y="%s" text-anchor="end">%s</text>`+"\n", num(b.x+b.w-boxPad), num(b.y+b.h-9), esc(b.subtitle))
	}
	for _, n := range b.nodes {
		cls := "workload"
		if n.isExternal {
			cls += " external"
		}
		note := ""
		switch {
		case n.w.External:
			note = "external: admitted, not run locally"
		case n.w.DBRole != "":
			note = "PostgreSQL role " + n.w.DBRole
		case n.w.Public != "":
			note = "public HTTPS, token exchange"
		}
		fmt.Fprintf(out, `<g class="%s" data-workload="%s" data-spiffe-id="%s" tabindex="0"><title>%s</title>`,
			cls, esc(n.w.Name), esc(n.w.ID.String()), esc(n.w.ID.String()))
		fmt.Fprintf(out, `<rect x="%s" y="%s" width="%s" height="%s" rx="6"/>`, num(n.x), num(n.y), num(n.wd), num(nodeH))
		fmt.Fprintf(out, `<text class="name" x="%s" y="%s" text-anchor="middle">%s</text>`, num(n.cx()), num(n.y+18), esc(n.w.Name))
		fmt.Fprintf(out, `<text class="id" x="%s" y="%s" text-anchor="middle">%s</text>`, num(n.cx()), num(n.y+34), esc(n.w.ID.String()))
		if note != "" {
			fmt.Fprintf(out, `<text class="note" x="%s" y="%s" text-anchor="middle">%s</text>`, num(n.cx()), num(n.y+49), esc(note))
		}
		out.WriteString("</g>\n")
	}
	out.WriteString("</g>\n")
}

// num prints a coordinate with at most one decimal, so the file is stable and readable.
func num(f float64) string {
	s := fmt.Sprintf("%.1f", f)
	return strings.TrimSuffix(s, ".0")
}

func esc(s string) string { return html.EscapeString(s) }

func sign(f float64) float64 {
	if f < 0 {
		return -1
	}
	return 1
}

func anchorFor(dx float64) string {
	if dx < 0 {
		return "end"
	}
	return "start"
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
