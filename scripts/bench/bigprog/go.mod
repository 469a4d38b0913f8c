module mcalltrace.bench/bigprog

go 1.21
