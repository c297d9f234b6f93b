module github.com/ztbank/ztbank/services/edge

go 1.26.0

require github.com/ztbank/ztbank/libs v0.0.0

replace github.com/ztbank/ztbank/libs => ../../libs
