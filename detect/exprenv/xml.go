package exprenv

import (
	"encoding/xml"
	"strconv"
	"strings"
)

// xmlNode is a minimal DOM, enough for the XPath subset hub files use:
// /A/B[1]/C[@Name='x'].
type xmlNode struct {
	name     string
	attrs    []xml.Attr
	text     string
	children []*xmlNode
}

func (n *xmlNode) attr(name string) string {
	for _, a := range n.attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func parseXML(s string) *xmlNode {
	dec := xml.NewDecoder(strings.NewReader(s))
	root := &xmlNode{}
	stack := []*xmlNode{root}
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &xmlNode{name: t.Name.Local, attrs: t.Attr}
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			stack[len(stack)-1].text += string(t)
		}
	}
	return root
}

func xmlFind(doc, path string) *xmlNode {
	cur := []*xmlNode{parseXML(doc)}
	for _, step := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		name, preds := step, []string(nil)
		if i := strings.IndexByte(step, '['); i >= 0 {
			name = step[:i]
			for _, p := range strings.Split(step[i:], "]") {
				p = strings.TrimPrefix(p, "[")
				if p != "" {
					preds = append(preds, p)
				}
			}
		}
		var next []*xmlNode
		for _, c := range cur {
			var matched []*xmlNode
			for _, ch := range c.children {
				if ch.name == name || name == "*" {
					matched = append(matched, ch)
				}
			}
			for _, p := range preds {
				matched = xmlFilter(matched, p)
			}
			next = append(next, matched...)
		}
		if len(next) == 0 {
			return nil
		}
		cur = next
	}
	return cur[0]
}

func xmlFilter(ns []*xmlNode, pred string) []*xmlNode {
	if i, err := strconv.Atoi(pred); err == nil {
		if i >= 1 && i <= len(ns) {
			return ns[i-1 : i]
		}
		return nil
	}
	if strings.HasPrefix(pred, "@") {
		kv := strings.SplitN(pred[1:], "=", 2)
		var out []*xmlNode
		for _, n := range ns {
			if len(kv) == 1 {
				if n.attr(kv[0]) != "" {
					out = append(out, n)
				}
				continue
			}
			if n.attr(kv[0]) == strings.Trim(kv[1], `'"`) {
				out = append(out, n)
			}
		}
		return out
	}
	return ns
}
