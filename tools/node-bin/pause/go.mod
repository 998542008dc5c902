// The sandbox ("pause") program of the real node's pod sandbox image (issue 12): no dependencies.
module github.com/kpo-async/kpo-async/tools/node-bin/pause

go 1.26.0
