module mcalltrace.test/workload

go 1.19
