module github.com/ztbank/ztbank/tools

go 1.26.0

require github.com/ztbank/ztbank/libs v0.0.0

require github.com/google/go-cmp v0.7.0 // indirect

replace github.com/ztbank/ztbank/libs => ../libs
