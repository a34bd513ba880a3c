package report

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Table is a bench's result as printed and saved in report.json.
type Table struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	Notes   []string   `json:"notes"`
}

// Print writes the table aligned, then its notes.
func (t Table) Print(w io.Writer) {
	fmt.Fprintln(w, t.Title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.Columns, "\t")+"\t")
	for _, r := range t.Rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
	for _, n := range t.Notes {
		fmt.Fprintln(w, n)
	}
}

// Bars is one panel of a bench chart: one bar per label.
type Bars struct {
	Title  string
	Unit   string
	Labels []string
	Groups []BarGroup // several groups draw side by side (e.g. p50 and p99)
}

// BarGroup is one colour of bars.
type BarGroup struct {
	Name   string
	Values []float64
}

// WriteBars draws panels side by side into a PNG.
func WriteBars(path string, panels ...Bars) error {
	plots := make([]*plot.Plot, len(panels))
	for i, p := range panels {
		pl := plot.New()
		pl.Title.Text = p.Title
		pl.Y.Label.Text = p.Unit
		pl.NominalX(p.Labels...)
		w := vg.Points(40 / float64(len(p.Groups)))
		for g, grp := range p.Groups {
			bc, err := plotter.NewBarChart(plotter.Values(grp.Values), w)
			if err != nil {
				return err
			}
			bc.Color = plotutil.Color(g)
			bc.LineStyle.Color = color.Black
			bc.Offset = w * vg.Length(float64(g)-float64(len(p.Groups)-1)/2) // centre the group on its label
			pl.Add(bc)
			if len(p.Groups) > 1 {
				pl.Legend.Add(grp.Name, bc)
			}
		}
		pl.Legend.Top = true
		pl.Y.Min = 0
		pl.Y.Max *= 1.25 // Add stretched the axis to the tallest bar; leave room for the legend
		plots[i] = pl
	}
	const h = 12 * vg.Centimeter
	wdt := vg.Length(len(panels)) * 13 * vg.Centimeter
	img := vgimg.New(wdt, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
	for i, pl := range plots {
		pl.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return err
	}
	return f.Close()
}
