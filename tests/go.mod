module github.com/ztbank/ztbank/tests

go 1.26.0

require (
	github.com/ztbank/ztbank/libs v0.0.0
	github.com/ztbank/ztbank/tools v0.0.0
)

replace (
	github.com/ztbank/ztbank/libs => ../libs
	github.com/ztbank/ztbank/tools => ../tools
)
