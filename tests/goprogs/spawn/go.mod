module mcalltrace.test/spawn

go 1.19
