# Make ECGs with the DeepSynthBody service and read each into an R matrix, with httr2.
#
#   DSB_URL=http://127.0.0.1:8000 [DSB_API_KEY=...] Rscript examples/r/ecg_matrix.R [NUM_SAMPLES]
#
# Submits a request, follows its progress with the long poll (GET /jobs/{id}?wait=SECONDS answers as soon as the
# job changes), downloads the archive and reads each ECG's CSV into a 5000 x leads integer matrix (microvolts,
# one row per 1/500 s, one column per lead). Needs httr2 and jsonlite (Debian: r-cran-httr2 r-cran-jsonlite).
library(httr2)

url <- Sys.getenv("DSB_URL", "http://127.0.0.1:8000")
key <- Sys.getenv("DSB_API_KEY")
args <- commandArgs(trailingOnly = TRUE)
count <- if (length(args) > 0) as.integer(args[1]) else 20L

dsb <- function(path) {
  req <- request(paste0(url, path))
  if (nzchar(key)) req <- req_headers(req, Authorization = paste("Bearer", key))
  req
}

job <- dsb("/generate/cardiovascular/ecg") |>
  req_body_json(list(num_samples = count, seed = 7, format = "csv")) |>
  req_perform() |>
  resp_body_json()
message("job ", job$job_id, " queued")

while (!(job$status %in% c("finished", "failed", "canceled"))) {
  job <- dsb(job$links$self) |> req_url_query(wait = 30) |> req_timeout(60) |> req_perform() |> resp_body_json()
  message(job$status, " ", job$progress$done, "/", job$progress$total)
}
if (job$status != "finished") stop("job ", job$job_id, " ", job$status, ": ", job$error)

archive <- tempfile(fileext = ".zip")
dsb(job$links$result) |> req_perform(path = archive)
folder <- tempfile("ecgs")
unzip(archive, exdir = folder)

files <- sort(list.files(folder, pattern = "^ecg_\\d+\\.csv$", full.names = TRUE))
ecgs <- lapply(files, function(f) as.matrix(read.csv(f, check.names = FALSE)))  # a list of 5000 x leads matrices
first <- ecgs[[1]]
message(length(ecgs), " ECGs, each a ", nrow(first), " x ", ncol(first), " matrix; leads ",
        paste(colnames(first), collapse = ", "))
cat(jsonlite::toJSON(list(job_id = job$job_id, shape = c(length(ecgs), dim(first)), dtype = typeof(first),
                          first_row = unname(first[1, ])), auto_unbox = TRUE), "\n")
