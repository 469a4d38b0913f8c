module mcalltrace.bench/schedload

go 1.21
