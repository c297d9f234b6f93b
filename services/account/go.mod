module github.com/ztbank/ztbank/services/account

go 1.26.0

require github.com/ztbank/ztbank/libs v0.0.0

require github.com/go-chi/chi/v5 v5.5.0 // indirect

replace github.com/ztbank/ztbank/libs => ../../libs
