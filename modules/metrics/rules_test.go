package metrics_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/gochat/im-infra/devstack"
)

// rulesDir holds the Prometheus rule file and its unit tests.
var rulesDir = filepath.Join("..", "..", "compose", "infrastructure", "prometheus")

// TestAlertRules runs promtool (Debian package "prometheus"): the rules
// check, and the unit tests that fire each alert on synthetic series.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if devstack.RequireReal() {
			t.Fatalf("promtool is not installed (apt-get install prometheus): %v", err)
		}
		t.Skip("promtool is not installed (apt-get install prometheus)")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = rulesDir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		assert.Contains(t, string(out), "SUCCESS", "promtool %s", strings.Join(args, " "))
	}
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// TestAlertRulesUseDocumentedMetrics reads every metric and label the
// alert rules use and fails when one is missing from the README table:
// a rule on a name nothing emits never fires.
func TestAlertRulesUseDocumentedMetrics(t *testing.T) {
	table := readmeTable(t)
	data, err := os.ReadFile(filepath.Join(rulesDir, "alerts.yml"))
	require.NoError(t, err)
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &file))
	rules := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			rules++
			used := exprMetrics(r.Expr)
			require.NotEmpty(t, used.metrics, "%s: no metric found in %q", r.Alert, r.Expr)
			var rows []row
			for name, labels := range used.metrics {
				row, ok := tableRow(table, name)
				if !assert.True(t, ok, "%s uses %s, which is not in the README table", r.Alert, name) {
					continue
				}
				rows = append(rows, row)
				for _, l := range labels {
					assert.True(t, slices.Contains(row.Labels, l) || slices.Contains(targetLabels, l) || (l == "le" && row.Type == "histogram"),
						"%s matches label %q on %s, which has %v", r.Alert, l, name, row.Labels)
				}
			}
			for _, l := range used.grouping {
				known := slices.Contains(targetLabels, l)
				for _, row := range rows {
					known = known || slices.Contains(row.Labels, l)
				}
				assert.True(t, known, "%s groups by %q, which none of its metrics has", r.Alert, l)
			}
		}
	}
	assert.GreaterOrEqual(t, rules, 4)
}

// tableRow finds name's row; a histogram's series (_bucket, _sum,
// _count) belong to the histogram's row.
func tableRow(table map[string]row, name string) (row, bool) {
	if r, ok := table[name]; ok {
		return r, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if r, ok := table[base]; ok && r.Type == "histogram" {
				return r, true
			}
		}
	}
	return row{}, false
}

type exprUse struct {
	metrics  map[string][]string // metric -> label names matched
	grouping []string            // labels of by/without/on/ignoring/group_*
}

var (
	groupingRe = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	rangeRe    = regexp.MustCompile(`\[[^\]]*\]`)
	selectorRe = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	identRe    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords   = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
)

// exprMetrics lists the metrics of a PromQL expression with the labels
// their selectors match, and the grouping labels. It knows the subset of
// PromQL the rules use: selectors, ranges, functions, aggregations,
// grouping and arithmetic.
func exprMetrics(expr string) exprUse {
	use := exprUse{metrics: map[string][]string{}}
	for _, m := range groupingRe.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				use.grouping = append(use.grouping, l)
			}
		}
	}
	expr = groupingRe.ReplaceAllString(expr, " ")
	expr = rangeRe.ReplaceAllString(expr, " ")
	for _, m := range selectorRe.FindAllStringSubmatch(expr, -1) {
		var labels []string
		for _, lm := range matcherRe.FindAllStringSubmatch(m[2], -1) {
			labels = append(labels, lm[1])
		}
		use.metrics[m[1]] = append(use.metrics[m[1]], labels...)
	}
	expr = selectorRe.ReplaceAllString(expr, " $1 ")
	for _, loc := range identRe.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if slices.Contains(keywords, name) || strings.HasPrefix(strings.TrimSpace(expr[loc[1]:]), "(") {
			continue // a keyword, a function or an aggregation
		}
		if _, ok := use.metrics[name]; !ok {
			use.metrics[name] = nil
		}
	}
	delete(use.metrics, "")
	return use
}

func TestExprMetrics(t *testing.T) {
	use := exprMetrics(`sum by (job, http_route) (rate(x_sum{a="1",b=~"2|3"}[5m])) / on(job) group_left max(y_total) > 0.2 and z`)
	assert.Equal(t, map[string][]string{"x_sum": {"a", "b"}, "y_total": nil, "z": nil}, use.metrics)
	assert.Equal(t, []string{"job", "http_route", "job"}, use.grouping)
}
