package metrics_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// families is a parsed scrape.
type families map[string]*dto.MetricFamily

// scrape GETs the Prometheus text from h and parses it.
func scrape(t testing.TB, h http.Handler) families {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	return parse(t, rec.Body)
}

// scrapeURL GETs the Prometheus text from url and parses it.
func scrapeURL(t testing.TB, url string) families {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	return parse(t, resp.Body)
}

func parse(t testing.TB, r io.Reader) families {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	require.NoError(t, err)
	return fams
}

// sample returns the metric of family name whose labels include want, or
// nil when there is none.
func (f families) sample(name string, want map[string]string) *dto.Metric {
	fam := f[name]
	if fam == nil {
		return nil
	}
next:
	for _, m := range fam.GetMetric() {
		got := labelMap(m)
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is the value of a counter or gauge sample, or the count of a
// histogram's; -1 when there is no such sample.
func (f families) value(name string, want map[string]string) float64 {
	m := f.sample(name, want)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// labelNames lists the label names used by any sample of fam.
func labelNames(fam *dto.MetricFamily) []string {
	seen := map[string]bool{}
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			seen[l.GetName()] = true
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// row is one line of the README's metrics table.
type row struct {
	Name       string   // as Prometheus shows it
	Type       string   // counter, gauge, histogram
	Unit       string   // OTel unit, "" for none
	Labels     []string // label names
	Instrument string   // OTel instrument name
	Module     string
	Meaning    string
}

var backticks = regexp.MustCompile("`([^`]*)`")

// readmeTable parses the table under "## Metrics" in README.md.
func readmeTable(t testing.TB) map[string]row {
	t.Helper()
	f, err := os.Open("README.md")
	require.NoError(t, err)
	defer f.Close()
	rows := map[string]row{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			in = line == "## Metrics"
			continue
		}
		if !in || !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| metric") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		require.Len(t, cells, 7, "README metrics row %q: want 7 cells", line)
		cell := func(i int) []string {
			var out []string
			for _, m := range backticks.FindAllStringSubmatch(cells[i], -1) {
				out = append(out, m[1])
			}
			return out
		}
		one := func(i int) string {
			if v := cell(i); len(v) > 0 {
				return v[0]
			}
			return ""
		}
		r := row{
			Name: one(0), Type: strings.TrimSpace(cells[1]), Unit: one(2), Labels: cell(3),
			Instrument: one(4), Module: strings.TrimSpace(cells[5]), Meaning: strings.TrimSpace(cells[6]),
		}
		require.NotEmpty(t, r.Name, "row %q has no metric name", line)
		require.Contains(t, []string{"counter", "gauge", "histogram"}, r.Type, "row %q", line)
		_, dup := rows[r.Name]
		require.False(t, dup, "metric %s listed twice", r.Name)
		rows[r.Name] = r
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, rows, "README.md has no metrics table under ## Metrics")
	return rows
}

// checkAgainstTable asserts that every family in fams is a row of the
// table with its type and that its labels are the row's (a sample may
// carry fewer when an attribute was not set, never others).
func checkAgainstTable(t testing.TB, table map[string]row, fams families) {
	t.Helper()
	for name, fam := range fams {
		r, ok := table[name]
		if !ok {
			t.Errorf("metric %s is emitted but not in the README table", name)
			continue
		}
		if got := strings.ToLower(fam.GetType().String()); got != r.Type {
			t.Errorf("metric %s: Prometheus type %s, the table says %s", name, got, r.Type)
		}
		for _, l := range labelNames(fam) {
			if l == "le" {
				continue
			}
			if !slices.Contains(r.Labels, l) {
				t.Errorf("metric %s has label %q, which the table does not list (%v)", name, l, r.Labels)
			}
		}
	}
}
