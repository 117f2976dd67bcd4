package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/colcrypt/colcrypt/rotation"
)

// progress shows a running rotation on stderr: a bar redrawn in place on a
// terminal ("bar"), a line every few seconds elsewhere ("lines"), or
// nothing ("none").
type progress struct {
	w     io.Writer
	mode  string
	label string

	mu       sync.Mutex
	last     rotation.Progress
	have     bool
	drawnAt  time.Time
	drawnLen int // length of the bar on screen, 0 when none
}

// Redraw intervals.
const (
	barInterval  = 100 * time.Millisecond
	lineInterval = 2 * time.Second
	barWidth     = 30
)

func newProgress(w io.Writer, mode, label string) *progress {
	return &progress{w: w, mode: mode, label: label}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// update is the rotation's progress callback.
func (p *progress) update(pr rotation.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.have = pr, true
	now := time.Now()
	switch p.mode {
	case "bar":
		if now.Sub(p.drawnAt) >= barInterval {
			p.drawBar()
			p.drawnAt = now
		}
	case "lines":
		if p.drawnAt.IsZero() || now.Sub(p.drawnAt) >= lineInterval {
			fmt.Fprintln(p.w, "progress: "+describe(pr))
			p.drawnAt = now
		}
	}
}

// println prints a line of its own, above the bar.
func (p *progress) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearBar()
	fmt.Fprintln(p.w, s)
	if p.mode == "bar" && p.have {
		p.drawBar()
	}
}

// finish draws the final state and ends the bar's line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.have {
		return
	}
	switch p.mode {
	case "bar":
		p.drawBar()
		fmt.Fprintln(p.w)
		p.drawnLen = 0
	case "lines":
		fmt.Fprintln(p.w, "progress: "+describe(p.last))
	}
}

// drawBar draws the bar over the current line; p.mu must be held.
func (p *progress) drawBar() {
	pr := p.last
	frac := 1.0
	if pr.Total > 0 {
		frac = min(1, float64(pr.Done)/float64(pr.Total))
	}
	filled := int(frac * barWidth)
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-filled-1)
	}
	s := fmt.Sprintf("%s [%s] %s", p.label, bar, describe(pr))
	pad := ""
	if n := p.drawnLen - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprint(p.w, "\r"+s+pad)
	p.drawnLen = len(s)
}

// clearBar blanks the bar's line; p.mu must be held.
func (p *progress) clearBar() {
	if p.mode == "bar" && p.drawnLen > 0 {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.drawnLen)+"\r")
		p.drawnLen = 0
	}
}

// describe is a one-line summary of a progress report.
func describe(pr rotation.Progress) string {
	pct := 100.0
	if pr.Total > 0 {
		pct = min(100, 100*float64(pr.Done)/float64(pr.Total))
	}
	eta := "-"
	if pr.ETA >= 0 {
		eta = pr.ETA.Round(time.Second).String()
	}
	s := fmt.Sprintf("%3.0f%% %d/%d rows, %.0f rows/s, ETA %s", pct, pr.Done, pr.Total, pr.Rate, eta)
	if pr.Pass > 1 {
		s += fmt.Sprintf(", pass %d (rows the application had locked)", pr.Pass)
	}
	if pr.Failed > 0 {
		s += fmt.Sprintf(", %d failed", pr.Failed)
	}
	return s
}
