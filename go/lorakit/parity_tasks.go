package lorakit

import (
	"fmt"
	"math"
)

// CompareEntityResult compares token counts, the token logits of real tokens (padding is not defined by the
// model) within the tolerance, the argmax of every real token, and the entities: the same type, start, end
// and text, score within the tolerance.
func (g *Golden) CompareEntityResult(res *EntityResult) []Check {
	tokens := g.compareTokensUsed(res.TokensUsed)
	if g.Output != OutputTokenLogits || res.NumTexts != g.NumTexts || res.NumLabels != g.NumLabels ||
		len(res.TokenLogits) != g.NumTexts || len(res.Entities) != g.NumTexts {
		return []Check{tokens,
			shapeMismatch("token_logits", g.NumTexts, g.NumLabels, res.NumTexts, res.NumLabels, g.Tolerance),
			shapeMismatch("argmax", g.NumTexts, 1, res.NumTexts, 1, 0),
			shapeMismatch("entities", g.NumTexts, 1, res.NumTexts, 1, g.Tolerance)}
	}
	logits := Check{Output: "token_logits", Tolerance: g.Tolerance, Row: -1, Col: -1}
	argmax := Check{Output: "argmax", Row: -1, Col: -1}
	real := g.tokensPerText()
	for row := range g.NumTexts {
		n, k := int(real[row]), g.NumLabels
		start := row * g.SeqLen * k
		want, got := g.Logits[start:start+n*k], res.TokenLogits[row]
		if len(got) != len(want) {
			// The tokens_used check reports the count; the values of such a text cannot be lined up.
			logits.Mismatches++
			logits.MaxAbsDiff = math.Inf(1)
			argmax.Mismatches++
			argmax.MaxAbsDiff = 1
			logits.Detail = fmt.Sprintf("text %d has %d token logits, golden %d", row, len(got), len(want))
			continue
		}
		logits.addRow(row, want, got)
		for token := range n {
			w, o := argmaxOf(want[token*k:(token+1)*k]), argmaxOf(got[token*k:(token+1)*k])
			if w == o {
				continue
			}
			if argmax.Mismatches == 0 {
				argmax.Row, argmax.Col, argmax.Expected, argmax.Got = row, token, float64(w), float64(o)
			}
			argmax.Mismatches++
			argmax.MaxAbsDiff = 1
		}
	}
	logits.OK, argmax.OK = logits.Mismatches == 0, argmax.Mismatches == 0
	return []Check{tokens, logits, argmax, g.compareEntities(res.Entities)}
}

// compareEntities counts the texts whose entities differ; Detail describes the first difference and
// MaxAbsDiff is the largest score difference of entities that otherwise agree.
func (g *Golden) compareEntities(got [][]Entity) Check {
	c := Check{Output: "entities", Tolerance: g.Tolerance, Row: -1, Col: -1}
	for row, want := range g.Entities {
		problem := ""
		if len(got[row]) != len(want) {
			problem = fmt.Sprintf("text %d: %d entities %v, golden %d %v", row, len(got[row]), got[row], len(want), want)
		}
		for j := 0; problem == "" && j < len(want); j++ {
			w, o := want[j], got[row][j]
			diff := math.Abs(float64(w.Score) - float64(o.Score))
			if math.IsNaN(diff) {
				diff = math.Inf(1)
			}
			if diff > c.MaxAbsDiff || c.Row < 0 {
				c.MaxAbsDiff, c.Row, c.Col, c.Expected, c.Got = diff, row, j, float64(w.Score), float64(o.Score)
			}
			if w.Type != o.Type || w.Start != o.Start || w.End != o.End || w.Text != o.Text || diff > g.Tolerance {
				problem = fmt.Sprintf("text %d entity %d: %+v, golden %+v", row, j, o, w)
			}
			if w.Type != o.Type || w.Start != o.Start || w.End != o.End || w.Text != o.Text {
				c.MaxAbsDiff = math.Inf(1) // another span: no score difference measures it
			}
		}
		if len(got[row]) != len(want) {
			c.MaxAbsDiff = math.Inf(1)
		}
		if problem != "" {
			if c.Mismatches == 0 {
				c.Detail = problem
			}
			c.Mismatches++
		}
	}
	c.OK = c.Mismatches == 0
	return c
}

// CompareEmbeddings compares token counts and the vectors within the tolerance.
func (g *Golden) CompareEmbeddings(res *Embeddings) []Check {
	tokens := g.compareTokensUsed(res.TokensUsed)
	if g.Output != OutputEmbeddings || res.NumTexts != g.NumTexts || res.Dim != g.Dim ||
		len(res.Values) != len(g.Embeddings) {
		return []Check{tokens, shapeMismatch("embeddings", g.NumTexts, g.Dim, res.NumTexts, res.Dim, g.Tolerance)}
	}
	values := Check{Output: "embeddings", Tolerance: g.Tolerance, Row: -1, Col: -1}
	for row := range g.NumTexts {
		values.addRow(row, g.Embeddings[row*g.Dim:(row+1)*g.Dim], res.Row(row))
	}
	values.OK = values.Mismatches == 0
	return []Check{tokens, values}
}
