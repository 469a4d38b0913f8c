module mcalltrace.test/pprofsrv

go 1.19
