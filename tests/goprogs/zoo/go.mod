module mcalltrace.test/zoo

go 1.19
