package bench

import "context"

func runScale(ctx context.Context, o *Options, res *Result) error { return nil }
func runDrop(ctx context.Context, o *Options, res *Result) error  { return nil }
func Table(res *Result) string                                    { return "" }
func writeCharts(dir string, res *Result) error                   { return nil }
func WriteDocs(dir string, res *Result) error                     { return nil }
func Check(path string) error                                     { return nil }
